//! `ringfence release`: make signing keys, build and sign release bundles, verify and inspect
//! them, and sign rollback directives. The rules live in `ringfence-release`; this is glue.

use anyhow::{Context, bail};
use clap::Subcommand;
use ringfence_protocol::FailurePolicy;
use ringfence_release::{
    ArtifactSignature, Bundle, Component, MANIFEST_FORMAT, Manifest, ReleaseKey, RollbackDirective,
    SignedRollbackDirective, SlotState, TrustedKeys, VerifyOptions, Version,
};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum ReleaseCommand {
    /// Create a release signing key pair: DIR/release.key (secret, mode 0600) and
    /// DIR/release.pub.
    #[command(after_help = "Examples:\n  ringfence release keygen --out keys/")]
    Keygen(KeygenArgs),
    /// Build and sign a release bundle from an engine and/or content.
    // `--version` is the release's version here, not ringfence's.
    #[command(
        disable_version_flag = true,
        after_help = "Examples:\n  # Content only, for an engine the fleet already runs\n  ringfence release build --name detection --version 1.4.0 --engine-name sigma \\\n      --content rules/sigma --key keys/release.key --out detection-1.4.0.rfb\n  # Engine and content, failing closed\n  ringfence release build --name exec-allowlist --version 2.0.0 --engine bundled:allowlist \\\n      --content allow.json --policy fail-closed --key keys/release.key --out allow-2.0.0.rfb"
    )]
    Build(Box<BuildArgs>),
    /// Verify a bundle: trusted signature, hashes, and optionally rollback protection.
    ///
    /// Exits 0 when the bundle verifies, 1 when it is refused, 2 on bad arguments.
    #[command(
        after_help = "Examples:\n  ringfence release verify detection-1.4.0.rfb --pub keys/release.pub\n  ringfence release verify detection-1.3.0.rfb --pub keys/release.pub --installed 1.4.0 \\\n      --rollback back-to-1.3.0.json --json"
    )]
    Verify(VerifyArgs),
    /// Show what a bundle contains, without trusting it.
    #[command(
        after_help = "Examples:\n  ringfence release inspect detection-1.4.0.rfb\n  ringfence release inspect detection-1.4.0.rfb --json | jq .manifest"
    )]
    Inspect(InspectArgs),
    /// Sign a rollback directive allowing hosts to go back to an older release.
    #[command(
        after_help = "Examples:\n  ringfence release rollback-directive --channel detection --from 1.4.0 --to 1.3.0 \\\n      --reason \"1.4.0 floods alerts\" --expires-in 3d --key keys/release.key --out back-to-1.3.0.json"
    )]
    RollbackDirective(DirectiveArgs),
    /// Sign a file shipped beside releases (the agent binary): writes FILE.sig with its sha256,
    /// size and signature, which an agent checks before upgrading itself in place.
    #[command(
        after_help = "Examples:\n  ringfence release sign-binary --key keys/release.key target/release/ringfence"
    )]
    SignBinary(SignBinaryArgs),
    /// Check FILE against FILE.sig and trusted keys. Exits 0 when it verifies, 1 when refused.
    #[command(
        after_help = "Examples:\n  ringfence release verify-binary --pub keys/release.pub /usr/bin/ringfence"
    )]
    VerifyBinary(VerifyBinaryArgs),
    /// Publish a bundle to the server; preflight runs there unless skipped.
    ///
    /// Exits 0 when the server accepted it, 1 when preflight rejected it.
    #[command(
        after_help = "Examples:\n  ringfence release publish detection-1.4.0.rfb\n  ringfence release publish detection-1.4.0.rfb --json | jq .preflight_report"
    )]
    Publish(PublishArgs),
}

#[derive(Debug, clap::Args)]
pub struct PublishArgs {
    #[command(flatten)]
    operator: super::operator::OperatorArgs,
    /// The bundle from `ringfence release build`.
    bundle: PathBuf,
    /// Skip preflight (demos and emergencies); recorded in the server's audit log.
    #[arg(long)]
    skip_preflight: bool,
    /// Print the server's answer as one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct KeygenArgs {
    /// Directory to write release.key and release.pub into (created if missing).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct BuildArgs {
    /// Release channel, e.g. `exec-allowlist` or `detection`.
    #[arg(long)]
    name: String,
    /// Semantic version (no build metadata).
    #[arg(long)]
    version: Version,
    /// The engine component: a .wasm file, or `bundled:<name>`.
    #[arg(long)]
    engine: Option<String>,
    /// The engine's name; defaults to the engine file's name. Required for content-only
    /// releases.
    #[arg(long)]
    engine_name: Option<String>,
    /// Content: a file, or a directory of Sigma .yml rules (one stream).
    #[arg(long)]
    content: Option<PathBuf>,
    /// fail-open (allow and alert) or fail-closed (deny) when the engine cannot answer.
    #[arg(long, default_value = "fail-open")]
    policy: FailurePolicy,
    /// Oldest agent that may run this release.
    #[arg(long, default_value = "0.0.0")]
    min_agent_version: Version,
    /// Free-text notes for operators.
    #[arg(long, default_value = "")]
    notes: String,
    /// Build time in unix seconds (default now; set it for reproducible bundles).
    #[arg(long)]
    created_at: Option<u64>,
    /// The secret key file from `release keygen`.
    #[arg(long)]
    key: PathBuf,
    /// Where to write the bundle.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct SignBinaryArgs {
    /// The secret key file from `release keygen`.
    #[arg(long)]
    key: PathBuf,
    /// The file to sign.
    file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct VerifyBinaryArgs {
    /// Trusted public key file(s).
    #[arg(long = "pub", required = true)]
    public: Vec<PathBuf>,
    /// The file to check; its signature is FILE.sig.
    file: PathBuf,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// The bundle to verify.
    bundle: PathBuf,
    /// Trusted public key file(s).
    #[arg(long = "pub", required = true)]
    public: Vec<PathBuf>,
    /// Highest version already installed on the channel: check rollback protection too.
    #[arg(long)]
    installed: Option<Version>,
    /// A signed rollback directive accompanying the bundle.
    #[arg(long)]
    rollback: Option<PathBuf>,
    /// Check the manifest's minimum agent version against this agent version.
    #[arg(long)]
    agent_version: Option<Version>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct InspectArgs {
    /// The bundle to show.
    bundle: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Args)]
pub struct DirectiveArgs {
    /// Release channel.
    #[arg(long)]
    channel: String,
    /// The newest version being rolled back from.
    #[arg(long)]
    from: Version,
    /// The version hosts may go back to.
    #[arg(long)]
    to: Version,
    /// Why (kept in the directive and shown to operators).
    #[arg(long)]
    reason: String,
    /// How long the directive stays valid: `12h`, `7d`.
    #[arg(long, default_value = "7d", value_parser = ringfence_protocol::duration::parse)]
    expires_in: std::time::Duration,
    /// The secret key file.
    #[arg(long)]
    key: PathBuf,
    /// Where to write the signed directive (JSON).
    #[arg(long)]
    out: PathBuf,
}

pub fn run(command: ReleaseCommand) -> anyhow::Result<ExitCode> {
    match command {
        ReleaseCommand::Keygen(args) => keygen(args),
        ReleaseCommand::Build(args) => build(*args),
        ReleaseCommand::Verify(args) => verify(args),
        ReleaseCommand::Inspect(args) => inspect(args),
        ReleaseCommand::RollbackDirective(args) => directive(args),
        ReleaseCommand::SignBinary(args) => sign_binary(args),
        ReleaseCommand::VerifyBinary(args) => verify_binary(args),
        ReleaseCommand::Publish(args) => publish(args),
    }
}

fn sign_binary(args: SignBinaryArgs) -> anyhow::Result<ExitCode> {
    let key = ReleaseKey::read_file(&args.key)?;
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("read {}", args.file.display()))?;
    let name = args
        .file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let signature = ArtifactSignature::sign(&key, &name, &bytes);
    let out = ringfence_release::signature_path(&args.file);
    std::fs::write(&out, signature.to_bytes())
        .with_context(|| format!("write {}", out.display()))?;
    println!("{}  {}", signature.sha256, args.file.display());
    println!("signed by {} -> {}", key.key_id(), out.display());
    Ok(ExitCode::SUCCESS)
}

fn verify_binary(args: VerifyBinaryArgs) -> anyhow::Result<ExitCode> {
    let keys = TrustedKeys::read_files(&args.public)?;
    let bytes =
        std::fs::read(&args.file).with_context(|| format!("read {}", args.file.display()))?;
    let sig_path = ringfence_release::signature_path(&args.file);
    let sig_bytes =
        std::fs::read(&sig_path).with_context(|| format!("read {}", sig_path.display()))?;
    match ArtifactSignature::parse(&sig_bytes).and_then(|s| s.verify(&keys, &bytes)) {
        Ok(keyid) => {
            println!("{}: verified, signed by {keyid}", args.file.display());
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            println!("{}: REFUSED: {error}", args.file.display());
            Ok(ExitCode::from(1))
        }
    }
}

fn publish(args: PublishArgs) -> anyhow::Result<ExitCode> {
    let bytes =
        std::fs::read(&args.bundle).with_context(|| format!("read {}", args.bundle.display()))?;
    let path = format!("/api/v1/releases?skip_preflight={}", args.skip_preflight);
    let result: Result<serde_json::Value, _> =
        args.operator.client()?.post_bytes("publish", &path, &bytes);
    match result {
        Ok(release) => {
            if args.json {
                println!("{release}");
            } else {
                println!(
                    "published {}@{} (preflight {}){}",
                    release["channel"].as_str().unwrap_or("?"),
                    release["version"].as_str().unwrap_or("?"),
                    release["preflight"].as_str().unwrap_or("?"),
                    release["preflight_report"]["reason"]
                        .as_str()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(ringfence_uplink::ClientError::Refused {
            status: 422,
            message,
            ..
        }) => {
            eprintln!("ringfence: release refused: {message}");
            Ok(ExitCode::from(1))
        }
        Err(error) => Err(error.into()),
    }
}

fn keygen(args: KeygenArgs) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("create {}", args.out.display()))?;
    let secret = args.out.join("release.key");
    let public = args.out.join("release.pub");
    let key = ReleaseKey::generate()?;
    key.write_file(&secret)
        .context("write the secret key (an existing key is never overwritten)")?;
    key.public().write_file(&public)?;
    println!(
        "wrote {} (secret, 0600) and {}; key id {}",
        secret.display(),
        public.display(),
        key.key_id()
    );
    Ok(ExitCode::SUCCESS)
}

fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    let key = ReleaseKey::read_file(&args.key)?;
    let engine = args
        .engine
        .as_deref()
        .map(crate::commands::engine::read_engine)
        .transpose()?;
    let content = args
        .content
        .as_deref()
        .map(ringfence_protocol::content::read_content)
        .transpose()?;
    if engine.is_none() && content.is_none() {
        bail!("a release needs --engine, --content, or both");
    }
    let engine_name = match (&args.engine_name, &engine) {
        (Some(name), _) => name.clone(),
        (None, Some((name, _))) => name.clone(),
        (None, None) => bail!("a content-only release needs --engine-name"),
    };
    let engine = engine.map(|(_, bytes)| bytes);
    let manifest = Manifest {
        format: MANIFEST_FORMAT,
        name: args.name,
        version: args.version,
        engine_name,
        engine: engine.as_deref().map(Component::of),
        content: content.as_deref().map(Component::of),
        failure_policy: args.policy,
        min_agent_version: args.min_agent_version,
        created_at: args
            .created_at
            .unwrap_or_else(ringfence_protocol::clock::unix_secs),
        notes: args.notes,
    };
    let bundle = Bundle::build(&manifest, engine, content, &key)?;
    let bytes = bundle.to_bytes()?;
    write_file(&args.out, &bytes)?;
    println!(
        "built {} {} ({} bytes, manifest sha256 {}) signed by {}",
        manifest.name,
        manifest.version,
        bytes.len(),
        bundle.manifest_digest(),
        key.key_id()
    );
    Ok(ExitCode::SUCCESS)
}

fn write_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("write {}", path.display()))
}

fn read_bundle_bytes(path: &Path) -> anyhow::Result<Vec<u8>> {
    let len = std::fs::metadata(path)
        .with_context(|| format!("read {}", path.display()))?
        .len();
    if len > ringfence_release::MAX_BUNDLE_BYTES {
        bail!(
            "{}: {len} bytes is more than a bundle may be ({})",
            path.display(),
            ringfence_release::MAX_BUNDLE_BYTES
        );
    }
    std::fs::read(path).with_context(|| format!("read {}", path.display()))
}

fn verify(args: VerifyArgs) -> anyhow::Result<ExitCode> {
    let keys = TrustedKeys::read_files(&args.public)?;
    let bytes = read_bundle_bytes(&args.bundle)?;
    let directive = args
        .rollback
        .as_deref()
        .map(|path| -> anyhow::Result<SignedRollbackDirective> {
            let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
            Ok(SignedRollbackDirective::parse(&bytes)?)
        })
        .transpose()?;
    let installed = SlotState {
        highest_installed: args.installed,
        ..SlotState::default()
    };
    let options = VerifyOptions {
        agent_version: args.agent_version.as_ref(),
        now: ringfence_protocol::clock::unix_secs(),
        rollback: directive.as_ref(),
    };
    let result = ringfence_release::verify_bytes(&bytes, &keys, &installed, &options);
    let mut out = std::io::stdout().lock();
    match result {
        Ok(release) => {
            let m = release.manifest();
            if args.json {
                let report = serde_json::json!({
                    "ok": true,
                    "name": m.name,
                    "version": m.version.to_string(),
                    "signer": release.signer().to_string(),
                    "rollback": release.rollback(),
                    "manifest": m,
                });
                writeln!(out, "{report}")?;
            } else {
                writeln!(
                    out,
                    "ok: {} {} signed by {}{}",
                    m.name,
                    m.version,
                    release.signer(),
                    if release.rollback().is_some() {
                        " (rollback directive accepted)"
                    } else {
                        ""
                    }
                )?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            if args.json {
                let report = serde_json::json!({"ok": false, "error": error.to_string()});
                writeln!(out, "{report}")?;
            } else {
                writeln!(out, "refused: {error}")?;
            }
            Ok(ExitCode::from(1))
        }
    }
}

fn inspect(args: InspectArgs) -> anyhow::Result<ExitCode> {
    let bytes = read_bundle_bytes(&args.bundle)?;
    let bundle = Bundle::read(&bytes).with_context(|| format!("{}", args.bundle.display()))?;
    let m = bundle.manifest();
    let signers: Vec<String> = bundle
        .signatures()
        .iter()
        .map(|s| s.keyid.to_string())
        .collect();
    let mut out = std::io::stdout().lock();
    if args.json {
        let report = serde_json::json!({
            "verified": false,
            "manifest_sha256": bundle.manifest_digest().to_string(),
            "bundle_bytes": bytes.len(),
            "signers": signers,
            "manifest": m,
        });
        writeln!(out, "{report}")?;
        return Ok(ExitCode::SUCCESS);
    }
    writeln!(out, "release   {} {}", m.name, m.version)?;
    writeln!(out, "engine    {}", m.engine_name)?;
    let component = |c: &Option<Component>| match c {
        Some(c) => format!("{} bytes, sha256 {}", c.size, c.sha256),
        None => "-".to_owned(),
    };
    writeln!(out, "component {}", component(&m.engine))?;
    writeln!(out, "content   {}", component(&m.content))?;
    let policy = match m.failure_policy {
        FailurePolicy::FailOpen => "fail-open",
        FailurePolicy::FailClosed => "fail-closed",
    };
    writeln!(out, "policy    {policy}")?;
    writeln!(out, "min agent {}", m.min_agent_version)?;
    writeln!(out, "created   {} (unix)", m.created_at)?;
    writeln!(out, "manifest  sha256 {}", bundle.manifest_digest())?;
    writeln!(out, "signers   {}", signers.join(", "))?;
    if !m.notes.is_empty() {
        writeln!(out, "notes     {}", m.notes)?;
    }
    writeln!(
        out,
        "(hashes checked; signatures not checked: use `ringfence release verify`)"
    )?;
    Ok(ExitCode::SUCCESS)
}

fn directive(args: DirectiveArgs) -> anyhow::Result<ExitCode> {
    let key = ReleaseKey::read_file(&args.key)?;
    let issued_at = ringfence_protocol::clock::unix_secs();
    let directive = RollbackDirective {
        channel: args.channel,
        from_version: args.from,
        to_version: args.to,
        reason: args.reason,
        issued_at,
        expires_at: issued_at.saturating_add(args.expires_in.as_secs()),
    };
    let signed = directive.sign(&key)?;
    write_file(&args.out, &signed.to_bytes())?;
    println!(
        "signed rollback directive: {} {} -> {}, valid until {} (unix), key {}",
        directive.channel,
        directive.from_version,
        directive.to_version,
        directive.expires_at,
        key.key_id()
    );
    Ok(ExitCode::SUCCESS)
}
