//! One plain function per subcommand.

pub mod inject;
