//! What sits in a Turing Pi 2 slot: a Turing RK1 or a Raspberry Pi Compute Module 4. Every fact
//! that differs between them is here, once; the templates read them as typed fields
//! ([`ModuleFacts`], `node.module.*` and `modules`), never by the module's name.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::Layout;
use crate::echo::quoted;

/// The compute module in a slot (flakesmith.yaml `nodes[].module`, `add-node --module`).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Module {
    /// Turing RK1 (Rockchip RK3588); what a node without `module:` is.
    #[default]
    Rk1,
    /// Raspberry Pi Compute Module 4 (BCM2711) with eMMC.
    Cm4,
}

impl Module {
    pub const ALL: [Module; 2] = [Module::Rk1, Module::Cm4];

    /// The name flakesmith.yaml and `--module` take.
    pub fn name(self) -> &'static str {
        match self {
            Module::Rk1 => "rk1",
            Module::Cm4 => "cm4",
        }
    }

    /// Its short name in prose: "NixOS for 3 Turing RK1 nodes and 1 Raspberry Pi CM4 node".
    pub fn product(self) -> &'static str {
        match self {
            Module::Rk1 => "Turing RK1",
            Module::Cm4 => "Raspberry Pi CM4",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Module::Rk1 => "Turing RK1 (RK3588)",
            Module::Cm4 => "Raspberry Pi Compute Module 4 (BCM2711, eMMC)",
        }
    }

    /// How prose names the modules in the slots, `modules` being those there: "RK1", "CM4", or
    /// "RK1 and CM4" on a mixed board.
    pub fn label_of(modules: &[Module]) -> &'static str {
        match (
            modules.contains(&Module::Rk1),
            modules.contains(&Module::Cm4),
        ) {
            (_, false) => "RK1",
            (false, true) => "CM4",
            (true, true) => "RK1 and CM4",
        }
    }

    /// The flake package of the identical image for every slot holding this module (no host
    /// name; `flakesmith stamp` names each copy). No node may be called this.
    pub fn identical_image(self) -> &'static str {
        self.name()
    }

    /// The hardware module every node of this kind imports, and the template it comes from.
    pub fn base_template(self) -> &'static str {
        match self {
            Module::Rk1 => "shared/rk1-base.nix.tera",
            Module::Cm4 => "shared/cm4-base.nix.tera",
        }
    }

    pub fn base_file(self, layout: Layout) -> &'static str {
        match (self, layout) {
            (Module::Rk1, Layout::Rk1Cluster) => "rk1-base.nix",
            (Module::Cm4, Layout::Rk1Cluster) => "cm4-base.nix",
            (Module::Rk1, Layout::MultiCloud) => "platforms/rk1.nix",
            (Module::Cm4, Layout::MultiCloud) => "platforms/cm4.nix",
        }
    }

    /// Its serial console, which `tpi uart get --node N` reads (115200 baud on both).
    pub fn console(self) -> &'static str {
        match self {
            Module::Rk1 => "ttyS9",
            // sd-image-aarch64.nix's console=ttyS0,115200n8: the CM4's UART on GPIO 14/15.
            Module::Cm4 => "ttyS0",
        }
    }

    /// How the BMC reaches the module's eMMC when `tpi flash` runs: it asserts the slot's
    /// USB-boot line, power-cycles the slot and picks the loader by the USB ID that appears
    /// (turing-machines/bmcd, bmcd/src/usb_boot.rs). The deploy script only says it.
    pub fn usb_boot(self) -> &'static str {
        match self {
            // RK3588 Maskrom 2207:350b: bmcd loads its own SPL loader, then writes over rockusb.
            Module::Rk1 => "rockusb",
            // BCM2711 2711 boot ROM 0a5c:2711: bmcd runs rpiboot, the eMMC appears as mass storage.
            Module::Cm4 => "rpiboot",
        }
    }

    /// Whether its image needs a Rockchip bootloader written in front of the first partition
    /// (rk-inject); the CM4 boots from the Raspberry Pi firmware in the FAT partition instead.
    pub fn injects_bootloader(self) -> bool {
        matches!(self, Module::Rk1)
    }

    pub fn parse(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.name() == s.trim())
            .ok_or_else(|| {
                format!(
                    "{} is not a compute module (allowed: {})",
                    quoted(s),
                    Self::ALL.map(Module::name).join(", ")
                )
            })
    }

    pub fn is_default(&self) -> bool {
        *self == Module::default()
    }

    /// What the templates see of this module in a repository of `layout`.
    pub fn facts(self, layout: Layout) -> ModuleFacts {
        ModuleFacts {
            kind: self,
            name: self.name(),
            product: self.product(),
            describe: self.describe(),
            image: self.identical_image(),
            base_file: self.base_file(layout),
            usb_boot: self.usb_boot(),
            console: self.console(),
            injects_bootloader: self.injects_bootloader(),
        }
    }
}

/// By name, through [`Module::parse`]: a wrong value of any type (`module: [cm4]` too) is an
/// error that lists the allowed names, not serde's "expected a YAML tag".
impl<'de> Deserialize<'de> for Module {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Name;
        impl serde::de::Visitor<'_> for Name {
            type Value = Module;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "one of {}", Module::ALL.map(Module::name).join(", "))
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Module, E> {
                Module::parse(s).map_err(E::custom)
            }
        }
        deserializer.deserialize_str(Name)
    }
}

impl fmt::Display for Module {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A module as the templates see it: typed fields, so that a misspelt one fails to render.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleFacts {
    #[serde(skip)]
    pub kind: Module,
    pub name: &'static str,
    pub product: &'static str,
    pub describe: &'static str,
    /// The flake package of its identical image.
    pub image: &'static str,
    /// Its hardware module, relative to the repository root.
    pub base_file: &'static str,
    pub usb_boot: &'static str,
    pub console: &'static str,
    pub injects_bootloader: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prose_names_every_module_in_the_slots_and_only_those() {
        assert_eq!(Module::label_of(&[Module::Rk1]), "RK1");
        assert_eq!(Module::label_of(&[Module::Cm4]), "CM4");
        assert_eq!(Module::label_of(&[Module::Rk1, Module::Cm4]), "RK1 and CM4");
    }

    #[test]
    fn serde_names_are_the_names_users_type_and_rk1_is_the_default() {
        for m in Module::ALL {
            assert_eq!(serde_yaml_ng::to_string(&m).unwrap().trim(), m.name());
            assert_eq!(serde_yaml_ng::from_str::<Module>(m.name()).unwrap(), m);
            assert_eq!(Module::parse(m.name()), Ok(m));
        }
        assert_eq!(Module::default(), Module::Rk1);
        let err = Module::parse("jetson").unwrap_err();
        assert_eq!(err, "'jetson' is not a compute module (allowed: rk1, cm4)");
    }

    #[test]
    fn each_module_has_its_own_image_and_hardware_file() {
        let images: Vec<&str> = Module::ALL.map(Module::identical_image).to_vec();
        assert_eq!(images, ["rk1", "cm4"]);
        for layout in [Layout::Rk1Cluster, Layout::MultiCloud] {
            assert_ne!(Module::Rk1.base_file(layout), Module::Cm4.base_file(layout));
        }
        assert!(Module::Rk1.injects_bootloader() && !Module::Cm4.injects_bootloader());
        // flakesmith build records them for flakesmith stamp.
        for m in Module::ALL {
            assert!(crate::stamp::record::STAMPABLE_TARGETS.contains(&m.identical_image()));
        }
        assert_eq!(Module::Cm4.usb_boot(), "rpiboot");
    }

    /// The answers file: `module:` absent is rk1 and stays absent when written back; cm4 is
    /// written; a bad value is one line naming the field and the allowed values.
    #[test]
    fn the_answers_field() {
        use crate::model::{Answers, Project};
        let mut a = Answers::default();
        let plain = a.to_yaml();
        assert!(!plain.contains("module"), "{plain}");
        let read = Answers::from_yaml(&plain).unwrap();
        assert!(read.nodes.iter().all(|n| n.module == Module::Rk1));

        a.nodes[1].module = Module::Cm4;
        let text = a.to_yaml();
        assert_eq!(text.matches("module: cm4").count(), 1, "{text}");
        let read = Answers::from_yaml(&text).unwrap();
        assert_eq!(read.nodes[1].module, Module::Cm4);
        let p = Project::from_answers(&read).unwrap();
        assert_eq!(p.nodes[1].module.kind, Module::Cm4);
        assert_eq!(p.nodes[1].module.base_file, "cm4-base.nix");
        assert_eq!(p.modules(), [Module::Rk1, Module::Cm4]);

        let bad = text.replace("module: cm4", "module: jetson");
        let e = Answers::from_yaml(&bad).unwrap_err();
        assert_eq!(e.field, "nodes[1].module", "{e}");
        assert!(
            e.message.contains("rk1") && e.message.contains("cm4"),
            "{e}"
        );
        assert!(!e.to_string().contains('\n'), "{e}");

        // Not a string: still the allowed names, not serde's "expected a YAML tag".
        for value in ["[cm4]", "{a: 1}", "7"] {
            let bad = text.replace("module: cm4", &format!("module: {value}"));
            let e = Answers::from_yaml(&bad).unwrap_err();
            assert_eq!(e.field, "nodes[1].module", "{e}");
            assert!(e.message.contains("rk1, cm4"), "{value}: {e}");
            assert!(!e.message.contains("YAML tag"), "{value}: {e}");
        }
    }

    #[test]
    fn no_node_is_named_after_an_identical_image() {
        use crate::model::{Answers, Project};
        for image in Module::ALL.map(Module::identical_image) {
            let mut a = Answers::default();
            a.nodes[2].host = image.to_owned();
            let e = Project::from_answers(&a).unwrap_err();
            assert_eq!(e.field, "nodes[2].host", "{e}");
            assert!(e.message.contains("identical image"), "{e}");
        }
    }
}
