{
  lib,
  stdenv,
  rustPlatform,
  installShellFiles,
}:

let
  manifest = (lib.importTOML ../Cargo.toml).package;
in
rustPlatform.buildRustPackage {
  pname = manifest.name;
  inherit (manifest) version;

  src = lib.fileset.toSource {
    root = ../.;
    fileset = lib.fileset.unions [
      ../Cargo.toml
      ../Cargo.lock
      ../build.rs
      ../src
      ../scaffolds
    ];
  };
  cargoLock.lockFile = ../Cargo.lock;

  nativeBuildInputs = [ installShellFiles ];

  # The integration tests drive nix, mkimage, sfdisk and mkfs on disk images: they run in the
  # project's CI, not inside the Nix sandbox.
  doCheck = false;

  # Completions and the man page come from the binary itself, so they cannot drift from the CLI.
  postInstall = lib.optionalString (stdenv.buildPlatform.canExecute stdenv.hostPlatform) ''
    installShellCompletion --cmd flakesmith \
      --bash <($out/bin/flakesmith completions bash) \
      --zsh <($out/bin/flakesmith completions zsh) \
      --fish <($out/bin/flakesmith completions fish)
    $out/bin/flakesmith man > flakesmith.1
    installManPage flakesmith.1
  '';

  meta = {
    description = manifest.description;
    homepage = manifest.repository;
    license = with lib.licenses; [
      mit
      asl20
    ];
    mainProgram = "flakesmith";
  };
}
