//! The one integration-test binary; each area is a module beside this file.

mod inject;
