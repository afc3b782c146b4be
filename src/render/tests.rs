//! Every template, with every machine and every option: rendering is strict (render/strict.rs),
//! so a template that names a platform, machine field or answer that does not exist fails here
//! even when no snapshot case reaches that line.

use std::collections::BTreeSet;

use super::*;
use crate::model::{
    answers::{AwsImageFormat, ForeignBuild, NodeRecipients, SecretsMode, BLOB_FILE},
    AgeRecipient, Answers, Layout, Platform,
};

const AGE: &str = "age1qyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqszqgpqyqs3290gq";

/// The options a template tests, each one bit; those that mean nothing for the chosen platforms
/// are left off (the answers would be refused).
const OPTIONS: [&str; 10] = [
    "deployment-keys",
    "ssh-host-keys",
    "raw-efi",
    "aws-raw",
    "bootloader-blob",
    "remote-builders",
    "dots, password, recipients",
    "static address, no exporter",
    "emulated, one build system",
    "a CM4 in the second slot",
];

fn applies(option: usize, platforms: &[Platform]) -> bool {
    let has = |p| platforms.contains(&p);
    match option {
        2 => has(Platform::GenericX86_64),
        3 => has(Platform::Aws),
        4 | 5 | 7 | 9 => has(Platform::Rk1),
        _ => true,
    }
}

fn answers(layout: Layout, platforms: &[Platform], mask: u32) -> Answers {
    let on = |bit: usize| mask & (1 << bit) != 0;
    let mut a = Answers {
        layout,
        platforms: platforms.to_vec(),
        ..Answers::default()
    };
    if on(0) {
        a.secrets.mode = SecretsMode::DeploymentKeys;
    }
    if on(1) {
        a.secrets.node_recipients = NodeRecipients::SshHostKeys;
    }
    a.generic_x86_64.raw_efi = on(2);
    if on(3) {
        a.aws.image_format = AwsImageFormat::Raw;
    }
    if on(4) {
        a.bootloader.blob = Some(BLOB_FILE.into());
    }
    a.build.rk1_remote_builders = on(5);
    if on(6) {
        a.dots = Some("github:me/dots".into());
        a.temporary_password_hash = Some("$6$saltsalt$abcdefghijklmnopqrstuv".into());
        if a.secrets.mode == SecretsMode::Sops {
            a.secrets.admin_age_recipients = vec![AGE.into()];
        }
    }
    if on(7) {
        a.nodes[0].address = Some("10.0.0.5/24".into());
        a.network.gateway = Some("10.0.0.1".into());
        a.monitoring.node_exporter = false;
        a.monitoring.open_port = false;
    }
    if on(8) {
        a.build.foreign = ForeignBuild::Emulated;
        a.build.systems = vec!["aarch64-linux".into()];
    }
    if on(9) {
        a.nodes[1].module = crate::model::Module::Cm4;
    }
    a
}

/// Every layout with every set of platforms it allows.
fn platform_sets() -> Vec<(Layout, Vec<Platform>)> {
    let mut sets = vec![(Layout::Rk1Cluster, vec![Platform::Rk1])];
    for bits in 1..(1u32 << Platform::ALL.len()) {
        let chosen = Platform::ALL
            .into_iter()
            .enumerate()
            .filter(|(i, _)| bits & (1 << i) != 0)
            .map(|(_, p)| p)
            .collect();
        sets.push((Layout::MultiCloud, chosen));
    }
    sets
}

#[test]
fn every_template_renders_with_every_machine() {
    let tera = engine().unwrap();
    let mut used = BTreeSet::new();
    let mut renders = 0;
    for (layout, platforms) in platform_sets() {
        let applicable: Vec<usize> = (0..OPTIONS.len())
            .filter(|&o| applies(o, &platforms))
            .collect();
        let all = applicable.iter().fold(0, |m, &o| m | (1 << o));
        // Every combination for each machine alone and for all of them together; each option
        // alone, none and all for the sets in between (their templates are the same loops).
        let masks: Vec<u32> = if platforms.len() == 1 || platforms.len() == Platform::ALL.len() {
            (0..=all).filter(|m| m & !all == 0).collect()
        } else {
            [0, all]
                .into_iter()
                .chain(applicable.iter().map(|&o| 1 << o))
                .collect()
        };
        for mask in masks {
            let answers = answers(layout, &platforms, mask);
            let what = || {
                let options: Vec<_> = (0..OPTIONS.len())
                    .filter(|o| mask & (1 << o) != 0)
                    .map(|o| OPTIONS[o])
                    .collect();
                format!("{layout} {platforms:?} with {options:?}")
            };
            let mut project = Project::from_answers(&answers)
                .unwrap_or_else(|e| panic!("{}: answers refused: {e}", what()));
            if mask & (1 << 6) != 0 {
                // A node whose identity is known (.sops.yaml's anchors), one that is not.
                for node in project.nodes.iter().take(1) {
                    project
                        .node_age_recipients
                        .insert(node.host.to_string(), AgeRecipient::parse(AGE).unwrap());
                }
            }
            // Tera only: the Nix syntax check is the snapshots' and nix_syntax's, and slow here.
            if let Err(e) = render_unchecked(&tera, &project) {
                panic!("{}: {e}", what());
            }
            let machines = crate::model::machines(&project);
            used.extend(outputs(&project, &machines).iter().map(|o| o.template));
            renders += 1;
        }
    }
    let mut templates = Vec::new();
    collect_templates(&SCAFFOLDS, &mut templates);
    let unused: Vec<_> = templates
        .iter()
        .map(|(path, _)| path.as_str())
        // Imported by the others, never rendered by itself.
        .filter(|path| *path != "shared/macros.tera" && !used.contains(path))
        .collect();
    assert!(unused.is_empty(), "never rendered: {unused:?}");
    assert!(renders > 1000, "{renders} renders");
}

/// A template, rendered by the engine that renders the scaffolds.
fn render_one(text: &'static str) -> Result<String, String> {
    let tera = engine_with(&[("t", text)]).unwrap();
    let project = Project::from_answers(&Answers::default()).unwrap();
    let machines = crate::model::machines(&project);
    let context = tera::Context::from_serialize(Context::new(&project, &machines)).unwrap();
    tera.render("t", &context).map_err(|e| error_chain(&e))
}

#[test]
fn a_misspelt_field_or_platform_in_a_condition_fails_to_render() {
    for misspelt in [
        "{% for machine in machines %}{% if machine.has_bcm %}x{% endif %}{% endfor %}",
        "{% if has.azure %}x{% endif %}",
        "{% if not has.azure %}x{% endif %}",
        "{% if has.aws or has.azure %}x{% endif %}",
        "{% if has.rk1 and project.platfroms %}x{% endif %}",
        "{% set cloud = has.aws or has.azure %}{{ cloud }}",
        "{% if has.rk1 %}{% if has.azure %}x{% endif %}{% endif %}",
    ] {
        let error = render_one(misspelt).expect_err(misspelt);
        assert!(
            error.contains("azure") || error.contains("has_bcm") || error.contains("platfroms"),
            "{misspelt}: {error}"
        );
    }
    // What exists still tests as before: truthiness, `not`, comparisons, filters.
    assert_eq!(
        render_one(
            "{% for machine in machines %}{% if machine.has_slots and not machine.live_iso %}slots {% endif %}{% if machine.images %}images{% endif %}{% endfor %}\
             {% if has.rk1 and not has.aws %} rk1{% endif %}\
             {% if project.secrets.mode == \"sops\" %} sops{% endif %}\
             {% if project.nodes | length > 3 %} four{% endif %}\
             {% set n = project.dots %}{% if not n %} no-dots{% endif %}"
        )
        .unwrap(),
        "slots  rk1 sops four no-dots"
    );
}
