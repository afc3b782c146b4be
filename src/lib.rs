//! flakesmith: scaffold, grow and build Nix flake repositories for custom NixOS images.

pub mod cmd;
pub mod rockchip;
pub mod rockchip_vendor;
