//! Records an image as `flakesmith build` records the identical image it built (its SHA-256 and
//! content digest in images/identical-images.json), for benches/stamp.sh, which has no Nix build
//! to make one. Usage: record_identical_image REPO TARGET IMAGE

use anyhow::{Context, Result};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [repo, target, image] = args.as_slice() else {
        anyhow::bail!("usage: record_identical_image REPO TARGET IMAGE");
    };
    let repo = std::path::Path::new(repo);
    std::fs::create_dir_all(repo.join(flakesmith::images::IMAGES_DIR))?;
    let sha256 = flakesmith::images::sha256_file(image.as_ref(), |_| {})?;
    let recorded = flakesmith::stamp::record::Recorded::of(
        image.as_ref(),
        &format!("{target}/sd-image/image.img"),
        sha256,
    )
    .with_context(|| format!("reading {image}"))?;
    flakesmith::stamp::record::remember(repo, target, recorded)
}
