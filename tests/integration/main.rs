//! The one integration-test binary: each module covers one area, with real tools where the
//! machine has them.

mod init_cli;
mod interactive;
mod book;
mod grow;
mod packaging;
