//! `jiuzhu serve`: the HTTP server on the configured store.

use std::io::Write as _;
use std::process::ExitCode;

use anyhow::{anyhow, Context as _};
use jiuzhu_server::{Application, ServerSettings};

use crate::admin::open_store_with;
use crate::config::SettingsArgs;
use crate::settings::Overrides;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub settings: SettingsArgs,
    /// The largest file a department may push to /api/v1/feeds/…, in bytes
    /// (1024 to 1073741824), overriding the file and JIUZHU_FEED_MAX_BODY_BYTES.
    #[arg(long, value_name = "BYTES",
          value_parser = clap::value_parser!(u64).range(1024..=1024 * 1024 * 1024))]
    pub feed_max_body_bytes: Option<u64>,
}

pub fn run(args: &ServeArgs) -> ExitCode {
    let result = (|| -> anyhow::Result<()> {
        let settings = args
            .settings
            .load()
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
        runtime.block_on(async {
            let store = open_store_with(&settings).await?;
            let application = Application::build(
                store,
                ServerSettings {
                    listen: settings.listen,
                    max_body_bytes: usize::try_from(settings.max_body_bytes).unwrap_or(usize::MAX),
                    feed_max_body_bytes: usize::try_from(settings.feed_max_body_bytes).unwrap_or(usize::MAX),
                    request_timeout_ms: settings.request_timeout_ms,
                },
            )
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
            println!(
                "Jiuzhu is listening on http://{}:{} (database {}). Stop it with Ctrl-C.",
                settings.listen.ip(),
                application.port(),
                settings.database
            );
            std::io::stdout().flush().ok();
            application
                .run_until(async {
                    let _ = tokio::signal::ctrl_c().await;
                })
                .await
                .context("the server stopped")
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
