//! The generated deploy and build scripts, run against stand-in `tpi`, `ssh`, `ssh-keyscan`,
//! `nixos-rebuild`, `aws`, `gcloud`, `nix`, `flakesmith` and `sleep` (tests/fixtures/standins/)
//! that append their arguments to a log and answer as the real tools do. The tests assert the
//! exact command sequence and that a failure part-way stops the script with a message naming the
//! step. What the stand-ins cannot show: a BMC flashing a real node, a node booting, S3, EC2's
//! snapshot import, Cloud Storage, or an instance booting an image.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use flakesmith::model::{Layout, Platform};

use crate::support::{fixtures, Project, TestRepo};

struct Run {
    repo: TestRepo,
    log: PathBuf,
    _state: tempfile::TempDir,
}

impl Run {
    fn new(project: &Project) -> Self {
        let repo = TestRepo::from_tree(&project.render());
        let state = tempfile::tempdir().unwrap();
        Run {
            repo,
            log: state.path().join("calls.log"),
            _state: state,
        }
    }

    fn root(&self) -> String {
        self.repo.path().display().to_string()
    }

    /// The script with the stand-ins first on PATH (the real sha256sum, jq, ssh-keygen after).
    fn script(&self, path: &str) -> Command {
        let mut command = Command::new(self.repo.path().join(path));
        let path = format!(
            "{}:{}",
            fixtures().join("standins").display(),
            std::env::var("PATH").unwrap()
        );
        command
            .current_dir(self.repo.path())
            .env("PATH", path)
            .env("STANDIN_LOG", &self.log)
            .env_remove("STANDIN_FAIL")
            .env_remove("TPI_HOSTNAME")
            .env_remove("AWS_REGION")
            .env_remove("AWS_DEFAULT_REGION")
            .env_remove("CLOUDSDK_CORE_PROJECT")
            .env_remove("GOOGLE_CLOUD_PROJECT");
        command
    }

    /// The recorded calls, one per line, with the repository path shown as {repo}.
    fn calls(&self) -> Vec<String> {
        let text = fs_err::read_to_string(&self.log).unwrap_or_default();
        text.lines()
            .map(|l| l.replace(&self.root(), "{repo}"))
            .collect()
    }
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// What `flakesmith build` leaves: images/<target>/sd-image/nixos-<target>.img and SHA256SUMS.
pub(crate) fn built_images(repo: &TestRepo, targets: &[&str]) {
    let mut sums = String::new();
    for target in targets {
        let content = format!("image of {target}");
        repo.write(
            &format!("images/{target}/sd-image/nixos-{target}.img"),
            &content,
        );
        sums.push_str(&format!(
            "{}  {target}/sd-image/nixos-{target}.img\n",
            sha256_hex(content.as_bytes())
        ));
    }
    repo.write("images/SHA256SUMS", sums);
}

/// A real ed25519 public key, as ssh-keyscan prints it (post-deploy.sh fingerprints it).
fn host_key(dir: &Path) -> String {
    let key = tempfile::Builder::new()
        .prefix("host-key-")
        .tempdir_in(dir)
        .unwrap()
        .keep()
        .join("host");
    let status = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .unwrap();
    assert!(status.success());
    let public = fs_err::read_to_string(key.with_extension("pub")).unwrap();
    public
        .split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

fn rk1_cluster(nodes: usize) -> Project {
    Project::default()
        .with_nodes(nodes)
        .with_sops()
        .with_static_addresses()
}

const PROBE: &str = "ssh -o BatchMode=yes -o ConnectTimeout=10 -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null -o LogLevel=ERROR";

fn rk1_deploy(run: &Run) -> Command {
    let mut command = run.script("deploy/rk1-deploy.sh");
    let keydir = run.log.parent().unwrap().to_owned();
    command
        .env("TPI_USERNAME", "root")
        .env("TPI_PASSWORD", "bmc-password-never-logged")
        .env("STANDIN_HOST_KEY", host_key(&keydir));
    command
}

#[test]
fn rk1_deploy_flashes_power_cycles_waits_for_ssh_and_runs_post_deploy_per_node() {
    let run = Run::new(&rk1_cluster(2));
    built_images(&run.repo, &["rk1-node1", "rk1-node2"]);
    for host in ["rk1-node1", "rk1-node2"] {
        run.repo
            .write(&format!("keys/{host}.age"), "AGE-SECRET-KEY-1TEST\n");
    }
    let output = rk1_deploy(&run)
        .env("STANDIN_SSH_DOWN", "2")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");

    let sha = |t: &str| sha256_hex(format!("image of {t}").as_bytes());
    let mut expected = Vec::new();
    for (i, host) in ["rk1-node1", "rk1-node2"].iter().enumerate() {
        let slot = i + 1;
        let address = format!("10.0.0.{}", 11 + i);
        expected.extend([
            format!(
                "tpi --host turingpi.local flash --node {slot} --image-path {{repo}}/images/{host}/sd-image/nixos-{host}.img --sha256 {}",
                sha(host)
            ),
            format!("tpi --host turingpi.local power off --node {slot}"),
            format!("tpi --host turingpi.local power on --node {slot}"),
        ]);
        // The node is still booting for the first two probes; then everything as root, the
        // image's login for the first deploy (no sudo, no admin password).
        let known = "-o UserKnownHostsFile={repo}/deploy/known_hosts -o StrictHostKeyChecking=yes";
        for _ in 0..2 {
            expected.push(format!("{PROBE} root@{address} true"));
            expected.push("sleep 10".into());
        }
        expected.extend([
            format!("{PROBE} root@{address} true"),
            format!("ssh-keyscan -t ed25519 {address}"),
            format!("ssh {known} -o BatchMode=yes root@{address} true"),
            format!("ssh {known} root@{address} umask\\ 077\\ \\&\\&\\ mkdir\\ -p\\ /var/lib/sops-nix\\ \\&\\&\\ cat\\ \\>\\ /var/lib/sops-nix/key.txt.new\\ \\&\\&\\ mv\\ /var/lib/sops-nix/key.txt.new\\ /var/lib/sops-nix/key.txt"),
            format!(
                "  (stdin: 21 bytes, sha256 {})",
                sha256_hex(b"AGE-SECRET-KEY-1TEST\n")
            ),
            // Cross-built off aarch64: the node builds its own system.
            format!("nixos-rebuild switch --flake {{repo}}#{host} --target-host root@{address}{}", crate::secrets::build_host(&format!("root@{address}"))),
            format!("ssh {known} -o BatchMode=yes root@{address} true"),
            format!("ssh {known} -o BatchMode=yes admin@{address} true"),
        ]);
    }
    let calls = run.calls();
    // Whole calls, in order: a target host of 10.0.0.1x or a key sent to the wrong path is a
    // different line.
    assert_eq!(calls, expected, "calls:\n{}", calls.join("\n"));
    assert!(!stdout.contains("bmc-password") && !stderr.contains("bmc-password"));
    assert!(!fs_err::read_to_string(&run.log)
        .unwrap()
        .contains("bmc-password"));
    assert!(stderr.contains("Deployed: rk1-node1 rk1-node2"), "{stderr}");
}

#[test]
fn rk1_deploy_stops_at_a_failed_flash_and_says_which_node_and_step() {
    let run = Run::new(&rk1_cluster(2));
    built_images(&run.repo, &["rk1-node1", "rk1-node2"]);
    let output = rk1_deploy(&run)
        .args(["--no-post-deploy"])
        .env("STANDIN_FAIL", "flash --node 2")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("BMC returned 500"),
        "the tool's own error is shown: {stderr}"
    );
    assert!(
        stderr.contains("rk1-deploy: stopped: rk1-node2: tpi flash failed (exit 1)"),
        "{stderr}"
    );
    assert!(stderr.contains("finished: rk1-node1."), "{stderr}");
    let calls = run.calls();
    assert_eq!(
        calls
            .iter()
            .map(|c| c.split(" --image-path").next().unwrap())
            .collect::<Vec<_>>(),
        [
            "tpi --host turingpi.local flash --node 1",
            "tpi --host turingpi.local power off --node 1",
            "tpi --host turingpi.local power on --node 1",
            "tpi --host turingpi.local flash --node 2",
        ],
        "nothing after the failed flash"
    );
}

#[test]
fn rk1_deploy_refuses_an_image_whose_checksum_does_not_match() {
    let run = Run::new(&rk1_cluster(1));
    built_images(&run.repo, &["rk1-node1"]);
    // The image changed after SHA256SUMS was written: the BMC (here the stand-in) refuses it.
    run.repo
        .write("images/rk1-node1/sd-image/nixos-rk1-node1.img", "tampered");
    let output = rk1_deploy(&run).arg("--no-post-deploy").output().unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("sha256 checksum mismatch"), "{stderr}");
    assert!(
        stderr.contains("stopped: rk1-node1: tpi flash failed"),
        "{stderr}"
    );
    assert_eq!(run.calls().len(), 1);
}

#[test]
fn rk1_deploy_gives_up_waiting_for_ssh_after_the_timeout() {
    let run = Run::new(&rk1_cluster(1));
    built_images(&run.repo, &["rk1-node1"]);
    let output = rk1_deploy(&run)
        .args(["--timeout", "30"])
        .env("STANDIN_SSH_DOWN", "1000")
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("10.0.0.11 did not answer on SSH within 30s"),
        "{stderr}"
    );
    assert!(
        stderr.contains("uart get --node 1"),
        "says how to look: {stderr}"
    );
    assert!(
        stderr.contains("stopped: rk1-node1: waiting for SSH failed"),
        "{stderr}"
    );
    let calls = run.calls();
    assert_eq!(
        calls
            .iter()
            .filter(|c| c.starts_with("ssh -o BatchMode"))
            .count(),
        3
    );
    assert_eq!(calls.iter().filter(|c| *c == "sleep 10").count(), 3);
    assert!(!calls
        .iter()
        .any(|c| c.starts_with("ssh-keyscan") || c.starts_with("nixos-rebuild")));
}

#[test]
fn rk1_deploy_dry_run_prints_every_command_and_runs_none() {
    let run = Run::new(&rk1_cluster(2));
    built_images(&run.repo, &["rk1-node1", "rk1-node2"]);
    run.repo
        .write("keys/rk1-node2.age", "AGE-SECRET-KEY-1TEST\n");
    let output = run
        .script("deploy/rk1-deploy.sh")
        .args(["--dry-run", "--node", "rk1-node2", "--host", "10.1.1.1"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(run.calls().is_empty(), "dry run ran {:?}", run.calls());
    let root = run.root();
    let lines: Vec<&str> = stdout.lines().collect();
    let sha = sha256_hex(b"image of rk1-node2");
    assert_eq!(
        lines[..4],
        [
            format!("tpi --host 10.1.1.1 flash --node 2 --image-path {root}/images/rk1-node2/sd-image/nixos-rk1-node2.img --sha256 {sha} "),
            "tpi --host 10.1.1.1 power off --node 2 ".to_owned(),
            "tpi --host 10.1.1.1 power on --node 2 ".to_owned(),
            format!("{PROBE} root@10.0.0.12 true "),
        ]
    );
    // Then post-deploy.sh's own dry run: its commands, ending with the switch.
    assert!(
        lines[4..]
            .iter()
            .any(|l| l.contains("nixos-rebuild switch") && l.contains("#rk1-node2")),
        "{stdout}"
    );
    assert!(
        !stdout.contains("rk1-node1"),
        "only the node asked for: {stdout}"
    );
    assert!(
        !stderr.contains("Deployed:")
            && stderr.contains("Dry run: nothing was flashed or deployed"),
        "a dry run does not claim a deployment: {stderr}"
    );
}

#[test]
fn rk1_deploy_checks_its_input_before_touching_a_node() {
    let run = Run::new(&rk1_cluster(2));
    built_images(&run.repo, &["rk1"]);
    // Identical images boot with DHCP: each node's address must be given.
    let output = rk1_deploy(&run).arg("--identical").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(
        text(&output).1.contains("--address rk1-node1=ADDR"),
        "{}",
        text(&output).1
    );
    // No BMC login in the environment: refused before anything runs.
    let output = run.script("deploy/rk1-deploy.sh").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).1.contains("TPI_USERNAME and TPI_PASSWORD"));
    let output = rk1_deploy(&run).args(["--node", "nope"]).output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(run.calls().is_empty());

    // With the addresses, the identical image goes to every node, then each is switched to its
    // own configuration (which sets its host name).
    let output = rk1_deploy(&run)
        .args([
            "--identical",
            "--no-post-deploy",
            "--address",
            "rk1-node1=192.168.1.50",
        ])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output).1);
    let flashes: Vec<String> = run
        .calls()
        .into_iter()
        .filter(|c| c.contains(" flash "))
        .collect();
    assert_eq!(flashes.len(), 2);
    assert!(
        flashes
            .iter()
            .all(|c| c.contains("/images/rk1/sd-image/nixos-rk1.img")),
        "{flashes:?}"
    );
}

fn multi_cloud(platforms: &[Platform]) -> Project {
    let mut answers = Project::default().with_sops().answers().clone();
    answers.layout = Layout::MultiCloud;
    answers.platforms = platforms.to_vec();
    Project::from_answers(answers)
}

/// What `flakesmith build aws` leaves: the disk image and nix-support/image-info.json naming it.
fn built_aws_image(run: &Run) -> String {
    let disk = run
        .repo
        .path()
        .join("store/nixos-amazon-image-25.11.20251120.abcdef-x86_64-linux.vhd");
    run.repo.write(
        "store/nixos-amazon-image-25.11.20251120.abcdef-x86_64-linux.vhd",
        "vhd bytes",
    );
    run.repo.write(
        "images/aws/nix-support/image-info.json",
        format!(
            r#"{{"label": "25.11.20251120.abcdef", "boot_mode": "uefi", "system": "x86_64-linux", "logical_bytes": "2147483648", "file": "{}", "disks": {{"root": {{"file": "{}"}}}}}}"#,
            disk.display(),
            disk.display()
        ),
    );
    disk.display().to_string().replace(&run.root(), "{repo}")
}

fn aws_deploy(run: &Run) -> Command {
    let mut command = run.script("deploy/aws-deploy.sh");
    command
        .env("AWS_REGION", "eu-central-1")
        .env("FLAKESMITH_AWS_BUCKET", "acme-images")
        .env("STANDIN_BUCKET_REGION", "eu-central-1");
    command
}

#[test]
fn aws_deploy_uploads_imports_waits_registers_tags_and_prints_the_ami() {
    let run = Run::new(&multi_cloud(&[Platform::Aws]));
    let disk = built_aws_image(&run);
    let output = aws_deploy(&run).output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert_eq!(
        stdout, "ami-0123456789abcdef0\n",
        "stdout is the AMI id alone"
    );

    let name = "my-cluster-25.11.20251120.abcdef";
    let task = "import-snap-0123456789abcdef0";
    assert_eq!(
        run.calls(),
        [
            "aws sts get-caller-identity --output json".to_owned(),
            "aws s3api head-bucket --bucket acme-images --region eu-central-1".into(),
            "aws s3api get-bucket-location --bucket acme-images --output json".into(),
            format!("aws s3 cp {disk} s3://acme-images/{name}.vhd --region eu-central-1"),
            format!("aws ec2 import-snapshot --region eu-central-1 --role-name vmimport --description {name} --disk-container Format=VHD\\,UserBucket=\\{{S3Bucket=acme-images\\,S3Key={name}.vhd\\}} --output json"),
            format!("aws ec2 describe-import-snapshot-tasks --region eu-central-1 --import-task-ids {task} --output json"),
            "sleep 15".into(),
            format!("aws ec2 describe-import-snapshot-tasks --region eu-central-1 --import-task-ids {task} --output json"),
            "sleep 15".into(),
            format!("aws ec2 describe-import-snapshot-tasks --region eu-central-1 --import-task-ids {task} --output json"),
            format!("aws ec2 register-image --region eu-central-1 --name {name} --description NixOS\\ 25.11.20251120.abcdef\\ \\(my-cluster\\,\\ built\\ by\\ flakesmith\\) --architecture x86_64 --virtualization-type hvm --root-device-name /dev/xvda --block-device-mappings DeviceName=/dev/xvda\\,Ebs=\\{{SnapshotId=snap-0fedcba9876543210\\,VolumeType=gp3\\,DeleteOnTermination=true\\}} --ena-support --sriov-net-support simple --imds-support v2.0 --boot-mode uefi --output json"),
            format!("aws ec2 create-tags --region eu-central-1 --resources ami-0123456789abcdef0 snap-0fedcba9876543210 --tags Key=Name\\,Value={name} Key=flakesmith:project\\,Value=my-cluster Key=nixos:label\\,Value=25.11.20251120.abcdef"),
            format!("aws s3 rm s3://acme-images/{name}.vhd --region eu-central-1"),
        ]
    );
    // Progress while waiting.
    assert!(
        stderr.contains("19% converting") && stderr.contains("61% validated"),
        "{stderr}"
    );

    // --dry-run prints every command, on stdout, and calls nothing.
    let calls_before = run.calls().len();
    let output = aws_deploy(&run).arg("--dry-run").output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stderr}");
    assert_eq!(
        run.calls().len(),
        calls_before,
        "--dry-run called the aws CLI"
    );
    for step in [
        "+ aws sts get-caller-identity",
        "+ aws s3 cp",
        "+ aws ec2 import-snapshot",
        "+ aws ec2 register-image",
        "+ aws ec2 create-tags",
    ] {
        assert!(stdout.contains(step), "{step} not shown: {stdout}");
    }
}

#[test]
fn aws_deploy_checks_region_and_bucket_before_uploading() {
    let run = Run::new(&multi_cloud(&[Platform::Aws]));
    built_aws_image(&run);

    let output = aws_deploy(&run).env_remove("AWS_REGION").output().unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output)
        .1
        .contains("no region: pass --region or set AWS_REGION"));
    assert!(run.calls().is_empty());

    // The bucket lives in another region: import-snapshot could not read it.
    let output = aws_deploy(&run)
        .env("STANDIN_BUCKET_REGION", "us-east-1")
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("bucket acme-images is in us-east-1, not eu-central-1"),
        "{stderr}"
    );
    assert!(
        !run.calls().iter().any(|c| c.starts_with("aws s3 cp")),
        "{:?}",
        run.calls()
    );

    let output = aws_deploy(&run)
        .env("STANDIN_MISSING_BUCKET", "acme-images")
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("bucket acme-images does not exist or this account cannot read it"),
        "{stderr}"
    );
    assert!(
        stderr.contains("stopped: checking the bucket acme-images failed"),
        "{stderr}"
    );
    assert!(!run.calls().iter().any(|c| c.starts_with("aws s3 cp")));
}

#[test]
fn aws_deploy_stops_when_the_import_fails_and_registers_nothing() {
    let run = Run::new(&multi_cloud(&[Platform::Aws]));
    built_aws_image(&run);
    let output = aws_deploy(&run)
        .env("STANDIN_IMPORT_FAIL", "1")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty(), "no AMI id: {stdout}");
    assert!(
        stderr.contains("ended as 'deleted': ClientError: Disk validation failed"),
        "{stderr}"
    );
    assert!(
        stderr.contains(
            "stopped: waiting for the snapshot import import-snap-0123456789abcdef0 failed"
        ),
        "{stderr}"
    );
    let calls = run.calls();
    assert!(
        calls
            .last()
            .unwrap()
            .starts_with("aws ec2 describe-import-snapshot-tasks"),
        "{calls:?}"
    );
    assert!(!calls.iter().any(|c| c.contains("register-image")));

    // An AWS error mid-way (register-image refused) names that step.
    let run = Run::new(&multi_cloud(&[Platform::Aws]));
    built_aws_image(&run);
    let output = aws_deploy(&run)
        .env("STANDIN_FAIL", "register-image")
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr
            .contains("An error occurred (AccessDenied) when calling the register-image operation"),
        "{stderr}"
    );
    assert!(
        stderr.contains("aws-deploy: stopped: aws ec2 register-image failed"),
        "{stderr}"
    );
    assert!(!run.calls().iter().any(|c| c.contains("create-tags")));
}

fn built_gcp_image(run: &Run) {
    run.repo.write(
        "images/gcp/nixos-image-25.11.20251120.abcdef-x86_64-linux.raw.tar.gz",
        "tarball",
    );
}

#[test]
fn gcp_deploy_checks_uploads_creates_the_image_and_prints_it() {
    let run = Run::new(&multi_cloud(&[Platform::Gcp]));
    built_gcp_image(&run);
    let output = run
        .script("deploy/gcp-deploy.sh")
        .args(["--project", "acme-prod", "--bucket", "acme-images"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let name = "my-cluster-25-11-20251120-abcdef-x86-64-linux";
    assert_eq!(stdout, format!("{name}\n"));
    assert_eq!(
        run.calls(),
        [
            "gcloud projects describe acme-prod --format=value\\(projectId\\)".to_owned(),
            "gcloud storage buckets describe gs://acme-images --project acme-prod --format=value\\(name\\)".into(),
            format!("gcloud storage cp {{repo}}/images/gcp/nixos-image-25.11.20251120.abcdef-x86_64-linux.raw.tar.gz gs://acme-images/{name}.raw.tar.gz --project acme-prod"),
            format!("gcloud compute images create {name} --project acme-prod --source-uri gs://acme-images/{name}.raw.tar.gz --family my-cluster --guest-os-features UEFI_COMPATIBLE\\,VIRTIO_SCSI_MULTIQUEUE --description NixOS\\ 25.11.20251120.abcdef-x86_64-linux\\ \\(my-cluster\\,\\ built\\ by\\ flakesmith\\)"),
            format!("gcloud storage rm gs://acme-images/{name}.raw.tar.gz --project acme-prod"),
        ]
    );
}

#[test]
fn gcp_deploy_checks_project_and_bucket_first_and_stops_at_a_failed_step() {
    let run = Run::new(&multi_cloud(&[Platform::Gcp]));
    built_gcp_image(&run);
    let output = run
        .script("deploy/gcp-deploy.sh")
        .args(["--bucket", "acme-images"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(text(&output).1.contains("no project"));
    assert!(run.calls().is_empty());

    let output = run
        .script("deploy/gcp-deploy.sh")
        .args(["--project", "acme-prod", "--bucket", "acme-images"])
        .env("STANDIN_MISSING_PROJECT", "acme-prod")
        .output()
        .unwrap();
    let (_, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("project acme-prod does not exist or this account cannot see it"),
        "{stderr}"
    );
    assert_eq!(
        run.calls().len(),
        1,
        "nothing after the project check: {:?}",
        run.calls()
    );

    let run = Run::new(&multi_cloud(&[Platform::Gcp]));
    built_gcp_image(&run);
    let output = run
        .script("deploy/gcp-deploy.sh")
        .args(["--project", "acme-prod", "--bucket", "acme-images"])
        .env("STANDIN_FAIL", "compute images create")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("ERROR: (gcloud.compute.images) PERMISSION_DENIED"),
        "{stderr}"
    );
    assert!(
        stderr.contains("gcp-deploy: stopped: gcloud compute images create"),
        "{stderr}"
    );
    assert!(
        !run.calls().iter().any(|c| c.contains("storage rm")),
        "the upload stays for a retry"
    );
}

#[test]
fn build_all_images_prefers_flakesmith_and_falls_back_to_one_nix_build() {
    let run = Run::new(&rk1_cluster(2));
    // The stand-ins directory has a `flakesmith`: installed.
    let output = run
        .script("build-all-images.sh")
        .arg("--identical")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output).1);
    assert_eq!(
        run.calls(),
        ["flakesmith build -C . rk1-node1 rk1-node2 rk1"]
    );

    // Not installed (a PATH with the nix stand-in but no flakesmith), or --nix: plain nix build.
    let nix_only = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(fixtures().join("standins/nix"), nix_only.path().join("nix"))
        .unwrap();
    std::os::unix::fs::symlink(
        fixtures().join("standins/_record.sh"),
        nix_only.path().join("_record.sh"),
    )
    .unwrap();
    let output = run
        .script("build-all-images.sh")
        .env(
            "PATH",
            format!("{}:/usr/bin:/bin", nix_only.path().display()),
        )
        .args(["--system", "aarch64-linux"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output).1);
    assert_eq!(
        run.calls()[1..],
        ["nix --extra-experimental-features nix-command\\ flakes build .#packages.aarch64-linux.rk1-node1 .#packages.aarch64-linux.rk1-node2"]
    );

    // A failed build stops the script with the tool's message and exit status.
    let output = run
        .script("build-all-images.sh")
        .env("STANDIN_FAIL", "flakesmith build")
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).1.contains("1 of 2 targets failed"));
    assert!(!text(&output).0.contains("Flash the images"));
}

#[test]
fn plain_nix_build_refuses_a_directory_without_git_that_holds_keys() {
    // nix copies such a directory into the world-readable store whole, keys/ included.
    for project in [rk1_cluster(2), multi_cloud(&[Platform::Rk1, Platform::Aws])] {
        let run = Run::new(&project);
        run.repo
            .write("keys/rk1-node1.age", "AGE-SECRET-KEY-1 stand-in\n");
        let output = run
            .script("build-all-images.sh")
            .args(["--nix", "--system", "x86_64-linux"])
            .output()
            .unwrap();
        let (_, stderr) = text(&output);
        assert_eq!(output.status.code(), Some(1), "{stderr}");
        assert!(
            stderr.contains("not a git work tree, so nix build would copy keys/"),
            "{stderr}"
        );
        assert!(run.calls().is_empty(), "{:?}", run.calls());

        // In a git work tree (keys/ git-ignored), nix is run.
        let git = std::process::Command::new("git")
            .args(["init", "-q"])
            .current_dir(run.repo.path())
            .status()
            .unwrap();
        assert!(git.success());
        let output = run
            .script("build-all-images.sh")
            .args(["--nix", "--system", "x86_64-linux"])
            .output()
            .unwrap();
        assert!(output.status.success(), "{}", text(&output).1);
        assert!(
            run.calls()
                .iter()
                .any(|c| c.starts_with("nix ") && c.contains(" build ")),
            "{:?}",
            run.calls()
        );
    }
}

#[test]
fn multi_cloud_build_all_images_prefers_flakesmith() {
    let run = Run::new(&multi_cloud(&[Platform::Aws, Platform::Gcp]));
    let output = run
        .script("build-all-images.sh")
        .args(["--system", "x86_64-linux", "aws"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output).1);
    let calls = run.calls();
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(
        calls[0].starts_with("flakesmith build -C ")
            && calls[0].ends_with(" --system x86_64-linux aws"),
        "{calls:?}"
    );

    let output = run
        .script("build-all-images.sh")
        .args(["--nix", "--dry-run"])
        .output()
        .unwrap();
    let (stdout, _) = text(&output);
    assert!(
        stdout.contains("+ nix --extra-experimental-features nix-command\\ flakes build .#packages.x86_64-linux.aws --out-link result-aws"),
        "{stdout}"
    );
}

#[test]
fn the_stand_ins_pass_shellcheck() {
    // Those of the deploy journey (deploy_journey.rs) too.
    let mut files: Vec<PathBuf> = ["standins", "journey"]
        .iter()
        .flat_map(|dir| fs_err::read_dir(fixtures().join(dir)).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert!(files.len() >= 15, "{files:?}");
    let output = Command::new("shellcheck")
        .args(["--shell=bash", "--severity=style", "--external-sources"])
        .args(&files)
        .output()
        .expect("shellcheck is installed");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

#[test]
fn multi_cloud_scripts_pass_shellcheck() {
    // The snapshot cases are RK1 clusters; the cloud scripts are checked here.
    let tree = multi_cloud(&[Platform::Aws, Platform::Gcp, Platform::Rk1]).render();
    let repo = TestRepo::from_tree(&tree);
    let scripts: Vec<PathBuf> = tree
        .iter()
        .filter(|(p, _)| p.ends_with(".sh"))
        .map(|(p, _)| repo.path().join(p))
        .collect();
    for expected in [
        "deploy/aws-deploy.sh",
        "deploy/gcp-deploy.sh",
        "deploy/rk1-deploy.sh",
        "build-all-images.sh",
    ] {
        assert!(
            scripts.iter().any(|s| s.ends_with(expected)),
            "{expected} missing: {scripts:?}"
        );
    }
    let output = Command::new("shellcheck")
        .args(["--shell=bash", "--severity=style", "--external-sources"])
        .args(&scripts)
        .output()
        .expect("shellcheck is installed");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
}

/// `--stamped`: one build of the identical image, then per node stamp, flash, delete; never two
/// stamped copies at once, not even with the copy a killed run left behind. The stand-in
/// flakesmith writes a small file for a stamp (the real stamp is tested in stamp.rs); a BMC or a
/// node booting cannot be shown here.
#[test]
fn rk1_deploy_stamped_builds_once_and_stamps_flashes_and_removes_one_copy_at_a_time() {
    let run = Run::new(&rk1_cluster(2));
    let stale = run.repo.path().join("stamped/deploy.Kd93xq");
    std::fs::create_dir_all(&stale).unwrap();
    std::fs::write(stale.join("rk1-node2.img"), "left by a killed run").unwrap();
    let output = rk1_deploy(&run)
        .args(["--stamped", "--no-post-deploy"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let calls: Vec<String> = run
        .calls()
        .iter()
        .map(|c| {
            regex::Regex::new(r"deploy\.[A-Za-z0-9]{6}")
                .unwrap()
                .replace_all(c, "deploy.TMP")
                .into_owned()
        })
        .collect();
    let sha = |h: &str| sha256_hex(format!("stamped image of {h}").as_bytes());
    let mut expected = vec!["flakesmith build -C {repo} rk1".to_owned()];
    for (i, host) in ["rk1-node1", "rk1-node2"].iter().enumerate() {
        let slot = i + 1;
        expected.extend([
            format!("flakesmith stamp -C {{repo}} {host} --out {{repo}}/stamped/deploy.TMP"),
            "  (stamped copies present: 0)".to_owned(),
            format!(
                "tpi --host turingpi.local flash --node {slot} --image-path {{repo}}/stamped/deploy.TMP/{host}.img --sha256 {}",
                sha(host)
            ),
            format!("tpi --host turingpi.local power off --node {slot}"),
            format!("tpi --host turingpi.local power on --node {slot}"),
        ]);
    }
    assert_eq!(calls, expected);
    let left: Vec<_> = walkdir::WalkDir::new(run.repo.path().join("stamped"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .collect();
    assert!(left.is_empty(), "stamped copies left: {left:?}");
}

#[test]
fn rk1_deploy_stamped_stops_at_a_failed_flash_and_removes_the_copy() {
    let run = Run::new(&rk1_cluster(2));
    let output = rk1_deploy(&run)
        .args(["--stamped", "--no-post-deploy"])
        .env("STANDIN_FAIL", "flash --node 1")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("stopped: rk1-node1: tpi flash failed"),
        "{stderr}"
    );
    let calls = run.calls();
    assert_eq!(
        calls.len(),
        4,
        "build, stamp, flash; nothing after: {calls:?}"
    );
    assert!(calls[3].starts_with("tpi --host turingpi.local flash --node 1"));
    let left: Vec<_> = walkdir::WalkDir::new(run.repo.path().join("stamped"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .collect();
    assert!(
        left.is_empty(),
        "the stamped copy is removed on failure: {left:?}"
    );

    // --identical and --stamped exclude each other, before anything runs.
    let run = Run::new(&rk1_cluster(2));
    let output = rk1_deploy(&run)
        .args(["--stamped", "--identical"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    assert!(run.calls().is_empty());
}

/// A board mixing RK1s and Raspberry Pi CM4s: each node gets its own module's identical image
/// (`--identical`), and `--stamped` builds the identical image of each module it flashes, once.
/// `tpi flash` is the same command for both: the BMC picks rockusb or rpiboot by the USB ID the
/// slot shows (turing-machines/bmcd, book/src/cm4.md), which no stand-in can show.
#[test]
fn rk1_deploy_flashes_each_node_with_its_modules_image_on_a_mixed_board() {
    let mut answers = flakesmith::model::Answers::default();
    answers.set_hosts(
        ["rk1-a", "cm4-a", "rk1-b", "cm4-b"]
            .map(String::from)
            .to_vec(),
    );
    let mixed = Project::from_answers(answers).with_cm4(&["cm4-a", "cm4-b"]);

    let run = Run::new(&mixed);
    built_images(&run.repo, &["rk1", "cm4"]);
    let output = rk1_deploy(&run)
        .args(["--identical", "--no-post-deploy"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let sha = |t: &str| sha256_hex(format!("image of {t}").as_bytes());
    let mut expected = Vec::new();
    for (slot, image) in [(1, "rk1"), (2, "cm4"), (3, "rk1"), (4, "cm4")] {
        expected.extend([
            format!(
                "tpi --host turingpi.local flash --node {slot} --image-path {{repo}}/images/{image}/sd-image/nixos-{image}.img --sha256 {}",
                sha(image)
            ),
            format!("tpi --host turingpi.local power off --node {slot}"),
            format!("tpi --host turingpi.local power on --node {slot}"),
        ]);
    }
    assert_eq!(run.calls(), expected);

    // Stamped: only the images of the nodes asked for are built, each once.
    for (nodes, build) in [
        (&["cm4-a", "cm4-b"][..], "cm4"),
        (&["cm4-b", "rk1-a", "rk1-b"][..], "rk1 cm4"),
    ] {
        let run = Run::new(&mixed);
        let mut command = rk1_deploy(&run);
        command.args(["--stamped", "--no-post-deploy"]);
        for node in nodes {
            command.args(["--node", node]);
        }
        let output = command.output().unwrap();
        let (stdout, stderr) = text(&output);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        let calls = run.calls();
        assert_eq!(calls[0], format!("flakesmith build -C {{repo}} {build}"));
        let stamps = calls
            .iter()
            .filter(|c| c.starts_with("flakesmith stamp"))
            .count();
        assert_eq!(stamps, nodes.len(), "{calls:?}");
    }
}
