//! `jiuzhu serve`: the HTTP server on the configured store, the
//! dispatcher that sends the one-time codes at once and the notifications
//! due every `notify_interval_ms` to the notification log, and the scheduled periodic clearing
//! (`clearing_schedule`).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use jiuzhu_server::{Application, ApplicationSettings, ServerSettings};

use crate::admin::open_store_with;
use crate::config::SettingsArgs;
use crate::notify::open_log;
use crate::settings::Overrides;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// The notification log, overriding notification_log in the file and
    /// JIUZHU_NOTIFICATION_LOG.
    #[arg(long = "notification-log", value_name = "FILE")]
    pub notification_log: Option<PathBuf>,
    /// The largest file a department may push to /api/v1/feeds/…, in bytes
    /// (1024 to 1073741824), overriding the file and JIUZHU_FEED_MAX_BODY_BYTES.
    #[arg(long, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1024..=1024 * 1024 * 1024))]
    pub feed_max_body_bytes: Option<u64>,
    /// Serve a fresh demo store: a generated district (about 7,500
    /// recipients and 33,000 bills), staff with passwords, applications in
    /// each state, a batch awaiting approval. In a new temporary folder, or
    /// in --database (a SQLite file that must not exist yet).
    #[arg(long)]
    pub demo: bool,
    /// The demo's recipients.
    #[arg(long, default_value_t = 7_500, hide = true)]
    pub demo_people: u64,
    /// The demo's bills.
    #[arg(long, default_value_t = 33_000, hide = true)]
    pub demo_invoices: u64,
    /// With --demo and --database: the store exists already, filled from
    /// the district generated into DIR (`jiuzhu gen`: its policy, spells
    /// and bills loaded, as `KEEP=1 bash bench/import.sh` leaves them);
    /// only the demo's staff, letter, phones, applications and batches
    /// are added. For benchmarks on a large district made once.
    #[arg(long, value_name = "DIR", requires = "demo", hide = true)]
    pub demo_district: Option<PathBuf>,
}

pub fn run(args: &ServeArgs) -> ExitCode {
    let result = (|| -> anyhow::Result<()> {
        let settings = args
            .settings
            .load_with(args.notification_log.clone())
            .map_err(|error| anyhow!("{error}"))?
            .with_overrides(Overrides {
                feed_max_body_bytes: args.feed_max_body_bytes,
                ..Overrides::default()
            });
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_target(false)
            .init();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .context("cannot start the async runtime")?;
        let demo = if args.demo { Some(demo_folder(args)?) } else { None };
        let notification_log_path = match &demo {
            Some((folder, _)) if args.notification_log.is_none() => folder.join("notifications.log"),
            _ => settings.notification_log.clone(),
        };
        // Opened whatever the interval: a resident's one-time code is sent
        // at once by the server that made it.
        let notification_log: std::sync::Arc<dyn jiuzhu_store::Sender> =
            std::sync::Arc::new(open_log(&notification_log_path)?);
        runtime.block_on(async {
            let (store, resident) = match &demo {
                Some((folder, url)) => demo_store(args, &settings, folder, url).await?,
                None => (open_store_with(&settings).await?, None),
            };
            let application = Application::build(
                store.clone(),
                ServerSettings {
                    listen: settings.listen,
                    max_body_bytes: usize::try_from(settings.max_body_bytes).unwrap_or(usize::MAX),
                    feed_max_body_bytes: usize::try_from(settings.feed_max_body_bytes).unwrap_or(usize::MAX),
                    request_timeout_ms: settings.request_timeout_ms,
                    applications: application_settings(&settings),
                    demo: demo.is_some(),
                    oidc: settings.oidc(),
                },
            )
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
            let database = match &demo {
                Some((_, url)) => url.clone(),
                None => settings.database.to_string(),
            };
            println!(
                "Jiuzhu is listening on http://{}:{} (database {database}). Stop it with Ctrl-C.",
                settings.listen.ip(),
                application.port(),
            );
            if let Some(oidc) = &settings.oidc_issuer {
                tracing::info!(issuer = %oidc.as_str(), "residents may log in with the city's unified login");
            }
            if demo.is_some() {
                println!("Open http://{}:{}/ in a browser. The demo's staff, each with the password {}:", settings.listen.ip(), application.port(), crate::demo_store::DEMO_PASSWORD);
                for (name, title, roles) in crate::demo_store::DEMO_STAFF {
                    let roles: Vec<&str> = roles.iter().map(|role| role.as_str()).collect();
                    println!("  {name:<8} {title} ({})", roles.join(", "));
                }
                if let Some((person, phone)) = &resident {
                    println!("A resident logs in at /login with ID {person} and phone {phone}; the one-time code is shown on the page.");
                }
            }
            let (stop, stopped) = tokio::sync::watch::channel(false);
            // On standard error: whoever reads the first line of standard
            // output (the address) may close it after.
            let interval = match settings.notify_interval_ms {
                0 => {
                    tracing::info!(
                        log = %notification_log_path.display(),
                        "only one-time codes are sent by this server (notify_interval_ms = 0), at once, \
                         to the notification log"
                    );
                    None
                }
                interval_ms => {
                    tracing::info!(
                        log = %notification_log_path.display(),
                        interval_ms,
                        max_per_second = settings.notify_max_per_second,
                        "one-time codes at once and notifications due are written to the notification log"
                    );
                    Some(Duration::from_millis(interval_ms))
                }
            };
            let dispatcher = Some(store.spawn_dispatcher(
                notification_log,
                interval,
                settings.notify_max_per_second,
                stopped.clone(),
            ));
            let scheduler = crate::clear::spawn_scheduler(
                store.clone(),
                settings.clearing_schedule,
                settings.clearing_report_dir.clone(),
                stopped.clone(),
            );
            if let Some(schedule) = scheduler.as_ref().map(|_| settings.clearing_schedule) {
                tracing::info!(%schedule, reports = %settings.clearing_report_dir.display(), "periodic clearing is scheduled");
            }
            std::io::stdout().flush().ok();
            let served = application
                .run_until(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
                .context("the server stopped");
            // The round of notifications under way is finished first.
            let _ = stop.send(true);
            if let Some(dispatcher) = dispatcher {
                let _ = dispatcher.await;
            }
            if let Some(scheduler) = scheduler {
                let _ = scheduler.await;
            }
            store.close().await;
            served
        })
    })();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// How the server accepts applications, from the settings: a submission
/// may carry the most bills, each with the largest scan, in base64.
fn application_settings(settings: &crate::settings::Settings) -> ApplicationSettings {
    let limits = jiuzhu_formats::application::ApplicationLimits {
        max_scan_bytes: usize::try_from(settings.application_max_scan_bytes).unwrap_or(usize::MAX),
        ..Default::default()
    };
    ApplicationSettings {
        filing_deadline_days: settings.application_filing_days,
        limits,
        max_body_bytes: limits
            .max_scan_bytes
            .saturating_mul(limits.max_bills)
            .saturating_mul(4)
            / 3
            + 1024 * 1024,
    }
}

/// The demo's folder and database URL: --database (a SQLite file that must
/// not exist yet, or must with --demo-district), or a new temporary folder.
fn demo_folder(args: &ServeArgs) -> anyhow::Result<(PathBuf, String)> {
    match &args.settings.database {
        Some(url) => {
            let url = url.expose().to_owned();
            let path = url
                .strip_prefix("sqlite://")
                .ok_or_else(|| anyhow!("--demo makes a SQLite store: give --database sqlite://PATH"))?;
            let path = PathBuf::from(path);
            if let Some(district) = &args.demo_district {
                if !path.exists() {
                    return Err(anyhow!(
                        "{} does not exist: --demo-district adds the demo to a store filled from {}",
                        path.display(),
                        district.display()
                    ));
                }
                let folder = path.parent().map_or_else(|| PathBuf::from("."), PathBuf::from);
                return Ok((folder, url));
            }
            if path.exists() {
                return Err(anyhow!(
                    "{} exists: the demo makes a fresh store; give another --database or none",
                    path.display()
                ));
            }
            let folder = path
                .parent()
                .map_or_else(|| PathBuf::from("."), PathBuf::from)
                .join("jiuzhu-demo-district");
            std::fs::create_dir_all(&folder)
                .with_context(|| format!("cannot create {}", folder.display()))?;
            Ok((folder, url))
        }
        None => {
            let stamp = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |elapsed| elapsed.as_millis());
            let folder = std::env::temp_dir().join(format!("jiuzhu-demo-{}-{stamp}", std::process::id()));
            std::fs::create_dir_all(&folder)
                .with_context(|| format!("cannot create {}", folder.display()))?;
            let url = format!("sqlite://{}", folder.join("jiuzhu.db").display());
            Ok((folder, url))
        }
    }
}

/// A fresh demo store (see [`crate::demo_store`]), under the configured
/// data key or a new one.
async fn demo_store(
    args: &ServeArgs,
    settings: &crate::settings::Settings,
    folder: &std::path::Path,
    url: &str,
) -> anyhow::Result<(jiuzhu_store::Store, Option<(jiuzhu_core::ResidentId, String)>)> {
    let keys = match &settings.data_key {
        Some(key) => key.keys().map_err(|error| anyhow!("the data key: {error}"))?,
        None => jiuzhu_store::DataKeys::generate().map_err(|error| anyhow!("a data key: {error}"))?,
    };
    let store = jiuzhu_store::Store::open(url, keys, settings.database_pool_size)
        .await
        .with_context(|| format!("cannot open the database {url}"))?;
    let today = crate::clear::today_in_china().ok_or_else(|| anyhow!("the clock is not readable"))?;
    if let Some(district) = &args.demo_district {
        eprintln!(
            "Adding the demo to the store filled from {} …",
            district.display()
        );
        let resident = crate::demo_store::dress_filled(&store, district, today).await?;
        return Ok((store, Some(resident)));
    }
    eprintln!("Making the demo district in {} …", folder.display());
    let size = crate::demo_store::DemoSize {
        people: args.demo_people,
        invoices: args.demo_invoices,
    };
    let resident = crate::demo_store::fill(&store, &folder.join("district"), size, today).await?;
    Ok((store, Some(resident)))
}
