//! `lode job`: compute over stored data, as a client and as a verifier: `submit` a job spec,
//! follow it (`status`, `list`), download and check its outputs (`result`), and re-run it as the
//! job's named verifier (`verify`). The logic is `lode_market::client::jobs`' and
//! `lode_market::compute`'s; this module parses, calls and prints.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use lode_chain::actors::COMPUTE;
use lode_chain::actors::compute::{ComputeMethod, JobTerms};
use lode_chain::message::Method;
use lode_chain::types::{ActorId, Address, Epoch, TokenAmount};
use lode_market::client::chain::all_deals;
use lode_market::client::jobs::{
    CheckedResult, fetch_inputs, fetch_module, fetch_result, job_terms, providers_storing, rerun,
    settle_epoch, upload_module,
};
use lode_market::client::{ClientChain, ProviderAddrs, RpcClientChain};
use lode_market::compute::spec::{JobSpec, ModuleHash, ModuleSource, Verification, load_module};
use lode_node::rpc::client::NodeClient;
use lode_node::rpc::types::{JobFilter, JobView, VerificationView, parse_actor_id, parse_address};
use lode_node::wallet;
use serde::Serialize;

use super::common::{
    ApiArgs, ClientDirArgs, ClientKeyArgs, block_on, client_error, print_json, table,
};
use super::progress::spinner;

/// The largest module `lode job verify` fetches from a provider.
const MAX_MODULE_BYTES: u64 = 64 << 20;

/// `lode job` subcommands.
#[derive(Debug, Subcommand)]
pub(crate) enum JobCommand {
    /// Submit a compute job: a WASM module run next to pieces your providers store.
    ///
    /// Reads the job spec (YAML or JSON: `engine`, `inputs`, `outputs`, `resources`,
    /// `verification`, `payment`; see examples/jobs/), compiles a `.wat` module to wasm, and
    /// checks everything before anything is sent. The inputs' piece and payload sizes come from
    /// your imports (`lode client import`) or your deals. The module is uploaded to every
    /// provider that may run the job (those named, else every provider holding an active deal of
    /// yours for every input), then the job is submitted on chain with `k × payment` (plus the
    /// verifier's fee) escrowed from your account. Prints the job id.
    #[command(after_help = "Examples:
  lode job submit examples/jobs/wc.yaml --devnet ~/.local/share/lode/devnet
  lode job submit wc.yaml --deadline-in 30 --json
  lode job submit grep.json --key client.key --api 127.0.0.1:1234")]
    Submit(SubmitArgs),
    /// Show a job: its terms, the providers that accepted, their results, the verifier's
    /// verdict, the final result and who got what at settlement. `--wait` waits until it settles.
    #[command(after_help = "Examples:
  lode job status 0 --devnet ~/.local/share/lode/devnet
  lode job status 3 --wait --json")]
    Status(StatusArgs),
    /// List compute jobs, all or those of a client, a provider or a verifier.
    #[command(after_help = "Examples:
  lode job list --devnet ~/.local/share/lode/devnet
  lode job list --provider l01000 --open
  lode job list --client l3a1b2… --json")]
    List(ListArgs),
    /// Download a settled job's outputs and check them: the files and the run's outcome must hash
    /// to the job's final result on chain. Nothing is written at OUT unless they do.
    #[command(after_help = "Examples:
  lode job result 0 -o counts --devnet ~/.local/share/lode/devnet
  lode job result 4 -o out --provider l01001 --json
  lode job result 4 -o out --url http://203.0.113.7:8080")]
    Result(ResultArgs),
    /// Act as a job's named verifier: accept the role (locking the bond), wait for the
    /// provider's posted result, re-run the job from the module and the pieces retrieved from
    /// the provider (each checked against its hash or CommP), then attest (same result) or
    /// dispute with your own. Run it before the deadline: the provider takes the job only once
    /// its verifier has accepted.
    #[command(after_help = "Examples:
  lode job verify 2 --key verifier.key --devnet ~/.local/share/lode/devnet
  lode job verify 2 --from l3c4d5… --module wc.wat --json")]
    Verify(VerifyArgs),
}

/// Arguments of `lode job submit`.
#[derive(Debug, Args)]
pub(crate) struct SubmitArgs {
    /// The job spec (YAML or JSON).
    spec: PathBuf,
    /// Set the deadline to this many epochs after the chain's head (instead of the spec's
    /// `payment.deadline`).
    #[arg(long, value_name = "EPOCHS")]
    deadline_in: Option<u64>,
    /// Seconds to wait for the submission to land on chain.
    #[arg(long, default_value_t = 120)]
    wait_timeout: u64,
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    key: ClientKeyArgs,
    #[command(flatten)]
    dir: ClientDirArgs,
    /// Print the submission as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode job status`.
#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// The job id.
    job: u64,
    /// Wait until the job has settled (or failed).
    #[arg(long)]
    wait: bool,
    /// With --wait: give up after this many seconds.
    #[arg(long, default_value_t = 3600)]
    wait_timeout: u64,
    #[command(flatten)]
    api: ApiArgs,
    /// Print the job as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode job list`.
#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// Jobs of this client (`l0…`/`l3…`).
    #[arg(long, value_name = "ADDRESS")]
    client: Option<String>,
    /// Jobs this provider accepted or is named in (`l0…`).
    #[arg(long, value_name = "ACTOR")]
    provider: Option<String>,
    /// Jobs this account verifies.
    #[arg(long, value_name = "ADDRESS")]
    verifier: Option<String>,
    /// Only jobs not settled yet.
    #[arg(long)]
    open: bool,
    #[command(flatten)]
    api: ApiArgs,
    /// Print the jobs as a JSON array.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode job result`.
#[derive(Debug, Args)]
pub(crate) struct ResultArgs {
    /// The job id.
    job: u64,
    /// Where to write the outputs (a directory that does not exist yet).
    #[arg(short, long, value_name = "OUT")]
    out: PathBuf,
    /// Fetch from this provider (`l0…`); else each provider whose result is the final one, in
    /// turn.
    #[arg(long, value_name = "ACTOR")]
    provider: Option<String>,
    /// Fetch from this retrieval URL instead of the provider's announced one.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
    /// Print what was fetched and checked as JSON.
    #[arg(long)]
    json: bool,
}

/// Arguments of `lode job verify`.
#[derive(Debug, Args)]
pub(crate) struct VerifyArgs {
    /// The job id.
    job: u64,
    /// The module (`.wasm` or `.wat`); else fetched from the provider and checked against its
    /// hash.
    #[arg(long, value_name = "FILE")]
    module: Option<PathBuf>,
    /// Fetch the module and pieces from this URL instead of the provider's announced one.
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// Where to fetch the inputs and run [default: <client dir>/verify/<job>].
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
    /// Seconds to wait for the provider's result and for each message to land.
    #[arg(long, default_value_t = 3600)]
    wait_timeout: u64,
    #[command(flatten)]
    api: ApiArgs,
    #[command(flatten)]
    key: ClientKeyArgs,
    #[command(flatten)]
    dir: ClientDirArgs,
    /// Print the verdict as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs a `lode job` command.
pub(crate) fn run(cmd: JobCommand) -> anyhow::Result<()> {
    match cmd {
        JobCommand::Submit(a) => block_on(submit(a))?,
        JobCommand::Status(a) => block_on(status(a))?,
        JobCommand::List(a) => block_on(list(a))?,
        JobCommand::Result(a) => block_on(result(a))?,
        JobCommand::Verify(a) => block_on(verify(a))?,
    }
}

/// What `lode job submit` did.
#[derive(Debug, Serialize)]
struct SubmitReport {
    job_id: u64,
    message: String,
    epoch: Epoch,
    client: String,
    module: String,
    escrow: TokenAmount,
    deadline: Epoch,
    settle_epoch: Epoch,
    /// Providers the module was uploaded to.
    providers: Vec<String>,
}

fn module_bytes(spec: &JobSpec, spec_path: &Path) -> anyhow::Result<Vec<u8>> {
    let base = spec_path.parent().unwrap_or(Path::new("."));
    match spec.module_source(base)? {
        ModuleSource::Path(p) => Ok(load_module(&p)?),
        ModuleSource::Hash(h) => bail!(
            "engine.module names only the hash {h}: submitting uploads the module to the providers, so give its .wasm or .wat file"
        ),
    }
}

async fn retrieval_url(node: &NodeClient, miner: ActorId) -> anyhow::Result<String> {
    let info = node.state_miner_info(miner).await.map_err(client_error)?;
    Ok(ProviderAddrs::from_miner_info(&info)?
        .retrieval()?
        .to_string())
}

async fn submit(a: SubmitArgs) -> anyhow::Result<()> {
    let mut spec = JobSpec::load(&a.spec)?;
    let node = a.api.client()?;
    let chain = RpcClientChain::new(node.clone());
    let policy = chain.policy().await?;
    let head = chain.head_epoch().await?;
    if let Some(n) = a.deadline_in {
        spec.payment.deadline = head.saturating_add(n);
    }
    let secret = a.key.secret(&a.api)?;
    let client_addr = Address::Bls(secret.public_key());
    let me = chain.lookup_id(&client_addr).await?.with_context(|| {
        format!("{client_addr} has no account on chain yet: it must receive funds first")
    })?;
    let wasm = module_bytes(&spec, &a.spec)?;
    let imports = a.dir.store()?.list()?;
    let deals = all_deals(&chain, None, Some(me)).await?;
    let job = spec.to_job(ModuleHash::of(&wasm), &mut |cid| {
        imports
            .iter()
            .find(|i| lode_market::cid::piece_to_cid(&i.piece_cid) == *cid)
            .map(|i| i.payload_size)
    })?;
    let verifier = match &job.verification {
        Verification::Replicated { .. } => None,
        Verification::Verifier { verifier, .. } => {
            let id = chain.lookup_id(verifier).await?.with_context(|| {
                format!("the verifier {verifier} has no account on chain yet: it must receive funds first")
            })?;
            let bond = match spec
                .verification
                .verifier
                .as_ref()
                .and_then(|v| v.bond.as_ref())
            {
                Some(b) => b
                    .parse::<TokenAmount>()
                    .map_err(|e| anyhow::anyhow!("verification.verifier.bond: {e}"))?,
                None => job.payment.collateral,
            };
            Some((id, bond))
        }
    };
    let terms = job_terms(
        &job,
        &mut |cid| {
            let text = cid.to_string();
            imports
                .iter()
                .find(|i| lode_market::cid::piece_to_cid(&i.piece_cid) == *cid)
                .map(|i| i.padded_piece_size)
                .or_else(|| {
                    deals
                        .iter()
                        .find(|d| d.piece_cid == text)
                        .map(|d| d.piece_size)
                })
        },
        verifier,
    )?;
    let escrow = terms
        .escrow()
        .context("the job's payment × replicas overflows")?;
    if terms.deadline <= head {
        bail!(
            "the deadline {} has passed (head {head}): set payment.deadline later or pass --deadline-in EPOCHS",
            terms.deadline
        );
    }
    let until = settle_epoch(&terms, &policy.compute);
    let candidates = if terms.providers.is_empty() {
        providers_storing(&deals, &terms, until)
    } else {
        terms.providers.clone()
    };
    if candidates.is_empty() {
        bail!(
            "no provider holds an active deal of yours for every input lasting past epoch {until}: \
             make deals for the inputs first (`lode client deal`), or name providers in the spec"
        );
    }
    let bar = spinner("uploading the module to the providers");
    let mut uploaded = Vec::new();
    for p in &candidates {
        let sent = async {
            let url = retrieval_url(&node, *p).await?;
            upload_module(&url, &wasm).await?;
            anyhow::Ok(())
        }
        .await;
        match sent {
            Ok(()) => uploaded.push(p.to_string()),
            Err(e) => {
                bar.suspend(|| eprintln!("warning: provider {p} did not take the module: {e:#}"))
            }
        }
    }
    bar.finish_and_clear();
    if uploaded.is_empty() {
        bail!("no provider took the module; nothing was submitted");
    }
    let bar = spinner("submitting the job");
    let done = wallet::call_and_wait(
        &node,
        &secret,
        COMPUTE.into(),
        escrow,
        Method::Compute(ComputeMethod::SubmitJob(terms.clone())),
        Duration::from_secs(a.wait_timeout),
    )
    .await;
    bar.finish_and_clear();
    let done = done?;
    let job_id: u64 = lode_chain::codec::decode(&done.found.receipt.return_data)
        .context("the submission's receipt does not hold a job id")?;
    let report = SubmitReport {
        job_id,
        message: hex::encode(done.id),
        epoch: done.found.epoch,
        client: client_addr.to_string(),
        module: hex::encode(terms.module),
        escrow,
        deadline: terms.deadline,
        settle_epoch: until,
        providers: uploaded,
    };
    if a.json {
        return print_json(&report);
    }
    outln!("job          {}", report.job_id);
    outln!("message      {} (epoch {})", report.message, report.epoch);
    outln!("module       blake3:{}", report.module);
    outln!("escrow       {}", report.escrow);
    outln!(
        "deadline     {} (settles by {})",
        report.deadline,
        report.settle_epoch
    );
    outln!("uploaded to  {}", report.providers.join(", "));
    outln!("follow it with `lode job status {job_id}`");
    Ok(())
}

async fn job_view(node: &NodeClient, id: u64) -> anyhow::Result<JobView> {
    node.state_compute_job(id)
        .await
        .map_err(client_error)?
        .with_context(|| format!("no compute job {id} on chain; `lode job list` lists them"))
}

async fn status(a: StatusArgs) -> anyhow::Result<()> {
    let node = a.api.client()?;
    let mut job = job_view(&node, a.job).await?;
    if a.wait && job.state == "open" {
        let bar = spinner(format!("waiting for job {} to settle", a.job));
        let start = Instant::now();
        while job.state == "open" {
            if start.elapsed() > Duration::from_secs(a.wait_timeout) {
                bar.finish_and_clear();
                bail!(
                    "job {} is still open after {} s (it settles at epoch {})",
                    a.job,
                    a.wait_timeout,
                    job.settle_epoch
                );
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
            job = job_view(&node, a.job).await?;
        }
        bar.finish_and_clear();
    }
    if a.json {
        return print_json(&job);
    }
    print_job(&job);
    Ok(())
}

fn hash_or_dash(h: Option<[u8; 32]>) -> String {
    h.map(hex::encode).unwrap_or_else(|| "-".into())
}

fn print_job(j: &JobView) {
    let t = &j.terms;
    outln!("job          {}", j.job_id);
    outln!("client       {}", j.client);
    outln!(
        "state        {}{}",
        j.state,
        j.failure
            .as_deref()
            .map(|f| format!(" ({f})"))
            .unwrap_or_default()
    );
    outln!("module       blake3:{}", hex::encode(t.module));
    match &t.verification {
        VerificationView::Replicated { k } => outln!("verification replicated, k = {k}"),
        VerificationView::Verifier {
            verifier,
            fee,
            bond,
        } => {
            outln!("verification verifier {verifier} (fee {fee}, bond {bond})")
        }
    }
    outln!(
        "payment      {} per provider, collateral {}",
        t.payment,
        t.provider_collateral
    );
    outln!(
        "epochs       submitted {}, deadline {}, settles {}",
        j.submitted,
        t.deadline,
        j.settle_epoch
    );
    for i in &t.inputs {
        outln!(
            "input        /inputs/{} ← {} ({} payload bytes)",
            i.mount,
            i.piece_cid,
            i.payload_size
        );
    }
    if !j.slots.is_empty() {
        let rows: Vec<Vec<String>> = j
            .slots
            .iter()
            .map(|s| {
                vec![
                    s.provider.to_string(),
                    s.collateral.to_string(),
                    if s.committed { "yes" } else { "no" }.into(),
                    hash_or_dash(s.result),
                ]
            })
            .collect();
        out!(
            "{}",
            table(&["PROVIDER", "COLLATERAL", "COMMITTED", "RESULT"], &rows)
        );
    }
    if let Some(v) = &j.verifier {
        outln!(
            "verifier     {} (bond {}): {}",
            v.verifier,
            v.bond,
            v.verdict.as_deref().unwrap_or("no verdict yet")
        );
    }
    outln!(
        "result       {}{}",
        hash_or_dash(j.result),
        if j.disputed {
            " (the verifier's, disputed)"
        } else {
            ""
        }
    );
    if let Some(s) = &j.settlement {
        outln!("settled      epoch {}", s.epoch);
        for (who, amount) in &s.paid {
            outln!("  paid       {who} {amount}");
        }
        for (who, amount) in &s.returned {
            outln!("  returned   {who} {amount}");
        }
        for (who, amount) in &s.slashed {
            outln!("  slashed    {who} {amount}");
        }
        outln!("  refunded   {}", s.refunded);
        outln!("  to client  {} (of what was slashed)", s.to_client);
        outln!("  burnt      {}", s.burnt);
    }
}

async fn resolve(node: &NodeClient, text: &str) -> anyhow::Result<ActorId> {
    let addr = parse_address(text)?;
    if let Address::Id(id) = addr {
        return Ok(id);
    }
    node.state_lookup_id(&addr)
        .await
        .map_err(client_error)?
        .with_context(|| format!("{addr} has no account on chain"))
}

async fn list(a: ListArgs) -> anyhow::Result<()> {
    let node = a.api.client()?;
    let filter = JobFilter {
        client: match &a.client {
            Some(c) => Some(resolve(&node, c).await?),
            None => None,
        },
        provider: a.provider.as_deref().map(parse_actor_id).transpose()?,
        verifier: match &a.verifier {
            Some(v) => Some(resolve(&node, v).await?),
            None => None,
        },
        open_only: a.open,
    };
    let mut jobs: Vec<JobView> = Vec::new();
    let mut from = 0u64;
    loop {
        let page = node
            .state_compute_jobs(filter, from)
            .await
            .map_err(client_error)?;
        let Some(last) = page.last().map(|j| j.job_id) else {
            break;
        };
        jobs.extend(page.into_iter().filter(|j| j.job_id >= from));
        match last.checked_add(1) {
            Some(next) if next > from => from = next,
            _ => break,
        }
    }
    if a.json {
        return print_json(&jobs);
    }
    if jobs.is_empty() {
        outln!("no compute jobs");
        return Ok(());
    }
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|j| {
            vec![
                j.job_id.to_string(),
                j.client.to_string(),
                match &j.terms.verification {
                    VerificationView::Replicated { k } => format!("replicated({k})"),
                    VerificationView::Verifier { verifier, .. } => format!("verifier({verifier})"),
                },
                format!("{}/{}", j.slots.len(), replicas(j)),
                j.terms.deadline.to_string(),
                j.state.clone(),
                j.result
                    .map(|r| hex::encode(&r[..8]))
                    .unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    out!(
        "{}",
        table(
            &[
                "JOB",
                "CLIENT",
                "VERIFICATION",
                "PROVIDERS",
                "DEADLINE",
                "STATE",
                "RESULT"
            ],
            &rows
        )
    );
    Ok(())
}

fn replicas(j: &JobView) -> u64 {
    match j.terms.verification {
        VerificationView::Replicated { k } => k,
        VerificationView::Verifier { .. } => 1,
    }
}

async fn result(a: ResultArgs) -> anyhow::Result<()> {
    let node = a.api.client()?;
    let job = job_view(&node, a.job).await?;
    let Some(final_result) = job.result else {
        bail!(
            "job {} has no final result yet (state {}): `lode job status {} --wait` waits for it",
            a.job,
            job.state,
            a.job
        );
    };
    let providers: Vec<ActorId> = match &a.provider {
        Some(p) => vec![parse_actor_id(p)?],
        None => job
            .slots
            .iter()
            .filter(|s| s.result == Some(final_result))
            .map(|s| s.provider)
            .collect(),
    };
    if providers.is_empty() && a.url.is_none() {
        bail!(
            "no provider of job {} holds outputs with the final result{}: pass --url to fetch them elsewhere",
            a.job,
            if job.disputed {
                " (the verifier's result prevailed in a dispute)"
            } else {
                ""
            }
        );
    }
    let bar = spinner(format!(
        "fetching and checking the outputs of job {}",
        a.job
    ));
    let mut last_error = None;
    let mut fetched: Option<CheckedResult> = None;
    let tries: Vec<(ActorId, Option<String>)> = match &a.url {
        Some(u) => vec![(
            providers.first().copied().unwrap_or(ActorId(0)),
            Some(u.clone()),
        )],
        None => providers.iter().map(|p| (*p, None)).collect(),
    };
    for (p, url) in tries {
        let got = async {
            let url = match url {
                Some(u) => u,
                None => retrieval_url(&node, p).await?,
            };
            Ok::<_, anyhow::Error>(fetch_result(&url, p, &job, &a.out).await?)
        }
        .await;
        match got {
            Ok(r) => {
                fetched = Some(r);
                break;
            }
            Err(e) => {
                bar.suspend(|| eprintln!("warning: provider {p}: {e:#}"));
                last_error = Some(e);
            }
        }
    }
    bar.finish_and_clear();
    let Some(r) = fetched else {
        return Err(last_error
            .unwrap_or_else(|| anyhow::anyhow!("no provider to fetch from"))
            .context(format!(
                "no provider served outputs of job {} that check out",
                a.job
            )));
    };
    if a.json {
        return print_json(&r);
    }
    outln!("job       {}", r.job_id);
    outln!("provider  {}", r.provider);
    outln!("outcome   {:?}", r.outcome);
    outln!("result    {} (the final result on chain)", r.result);
    outln!(
        "written   {} ({} files, {} bytes)",
        r.out.display(),
        r.files,
        r.bytes
    );
    Ok(())
}

/// What `lode job verify` did.
#[derive(Debug, Serialize)]
struct VerifyReport {
    job_id: u64,
    verifier: String,
    provider: Option<String>,
    /// The provider's posted result (hex), if it posted one.
    posted: Option<String>,
    /// The result of the local re-run (hex).
    recomputed: Option<String>,
    /// How the local run ended.
    summary: Option<String>,
    /// `attested`, `disputed`, or `none` (the provider posted nothing: the chain slashes it).
    verdict: String,
    /// The verdict's message and epoch.
    message: Option<String>,
    epoch: Option<Epoch>,
}

async fn send(
    node: &NodeClient,
    secret: &lode_chain::crypto::SecretKey,
    value: TokenAmount,
    method: ComputeMethod,
    timeout: Duration,
) -> anyhow::Result<wallet::Executed> {
    Ok(wallet::call_and_wait(
        node,
        secret,
        COMPUTE.into(),
        value,
        Method::Compute(method),
        timeout,
    )
    .await?)
}

async fn verify(a: VerifyArgs) -> anyhow::Result<()> {
    let node = a.api.client()?;
    let timeout = Duration::from_secs(a.wait_timeout);
    let secret = a.key.secret(&a.api)?;
    let addr = Address::Bls(secret.public_key());
    let me = node
        .state_lookup_id(&addr)
        .await
        .map_err(client_error)?
        .with_context(|| format!("{addr} has no account on chain yet"))?;
    let mut job = job_view(&node, a.job).await?;
    let VerificationView::Verifier { verifier, bond, .. } = job.terms.verification else {
        bail!("job {} is replicated: it has no verifier", a.job);
    };
    if verifier != me {
        bail!(
            "job {} names {verifier} as its verifier, and your key is {me} ({addr}): pass its key with --key or --from",
            a.job
        );
    }
    let terms: JobTerms = job.terms.to_terms().map_err(anyhow::Error::msg)?;
    if job.verifier.is_none() {
        let bar = spinner(format!("accepting the verifier role (bond {bond})"));
        let done = send(
            &node,
            &secret,
            bond,
            ComputeMethod::AcceptVerifier { job: a.job },
            timeout,
        )
        .await;
        bar.finish_and_clear();
        let done = done?;
        tracing::info!(
            job = a.job,
            epoch = done.found.epoch,
            "verifier role accepted"
        );
        job = job_view(&node, a.job).await?;
    }
    let mut report = VerifyReport {
        job_id: a.job,
        verifier: me.to_string(),
        provider: None,
        posted: None,
        recomputed: None,
        summary: None,
        verdict: "none".into(),
        message: None,
        epoch: None,
    };
    if let Some(v) = job.verifier.as_ref().and_then(|v| v.verdict.clone()) {
        bail!("you already gave job {} your verdict: {v}", a.job);
    }
    // The provider's posted result, or none by the deadline.
    let bar = spinner(format!(
        "waiting for job {}'s provider to post its result (deadline {})",
        a.job, terms.deadline
    ));
    let start = Instant::now();
    let posted = loop {
        let slot = job.slots.first().map(|s| (s.provider, s.result));
        if let Some((p, Some(r))) = slot {
            break Some((p, r));
        }
        let head = node.chain_head().await.map_err(client_error)?.epoch;
        if head > terms.deadline || job.state != "open" {
            break None;
        }
        if start.elapsed() > timeout {
            bar.finish_and_clear();
            bail!(
                "no result posted for job {} after {} s",
                a.job,
                a.wait_timeout
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        job = job_view(&node, a.job).await?;
    };
    bar.finish_and_clear();
    let Some((provider, posted)) = posted else {
        report.provider = job.slots.first().map(|s| s.provider.to_string());
        return print_verify(&report, a.json);
    };
    report.provider = Some(provider.to_string());
    report.posted = Some(hex::encode(posted));
    let url = match &a.url {
        Some(u) => u.clone(),
        None => retrieval_url(&node, provider).await?,
    };
    let bar = spinner(format!("fetching job {}'s module and inputs", a.job));
    let module = match &a.module {
        Some(path) => {
            let bytes = load_module(path)?;
            if ModuleHash::of(&bytes).0 != terms.module {
                bar.finish_and_clear();
                bail!(
                    "{} does not hash to the job's module blake3:{}",
                    path.display(),
                    hex::encode(terms.module)
                );
            }
            bytes
        }
        None => fetch_module(&url, &terms.module, MAX_MODULE_BYTES).await?,
    };
    let work = a
        .work
        .clone()
        .unwrap_or_else(|| a.dir.dir().join("verify").join(a.job.to_string()));
    if work.exists() {
        std::fs::remove_dir_all(&work)
            .with_context(|| format!("clearing the work directory {}", work.display()))?;
    }
    let inputs = fetch_inputs(&url, &terms, &work.join("inputs")).await;
    bar.finish_and_clear();
    let inputs = inputs?;
    let bar = spinner(format!("re-running job {}", a.job));
    let (id, t, w) = (a.job, terms.clone(), work.clone());
    let ran = tokio::task::spawn_blocking(move || rerun(id, &t, module, inputs, &w)).await;
    bar.finish_and_clear();
    let ran = ran.context("the re-run stopped")??;
    report.recomputed = Some(hex::encode(ran.result));
    report.summary = Some(ran.summary);
    let (verdict, method) = if ran.result == posted {
        ("attested", ComputeMethod::Attest { job: a.job })
    } else {
        (
            "disputed",
            ComputeMethod::Dispute {
                job: a.job,
                result: ran.result,
            },
        )
    };
    let bar = spinner(format!("sending the verdict: {verdict}"));
    let done = send(&node, &secret, TokenAmount::ZERO, method, timeout).await;
    bar.finish_and_clear();
    let done = done?;
    report.verdict = verdict.into();
    report.message = Some(hex::encode(done.id));
    report.epoch = Some(done.found.epoch);
    print_verify(&report, a.json)
}

fn print_verify(r: &VerifyReport, json: bool) -> anyhow::Result<()> {
    if json {
        return print_json(r);
    }
    outln!("job         {}", r.job_id);
    outln!("verifier    {}", r.verifier);
    outln!("provider    {}", r.provider.as_deref().unwrap_or("-"));
    outln!("posted      {}", r.posted.as_deref().unwrap_or("-"));
    outln!("recomputed  {}", r.recomputed.as_deref().unwrap_or("-"));
    if let Some(s) = &r.summary {
        outln!("run         {s}");
    }
    match (&r.message, r.epoch) {
        (Some(m), Some(e)) => outln!("verdict     {} (message {m}, epoch {e})", r.verdict),
        _ => outln!(
            "verdict     none: the provider posted no result by the deadline; the chain slashes it at settlement"
        ),
    }
    Ok(())
}
