//! Echo server on fastwebsockets, as its own `echo_server` example: hyper answers the upgrade
//! (the crate's `upgrade` feature), then a `FragmentCollector` reads whole messages and each is
//! written back (auto-PONG and auto-close on).
#![forbid(unsafe_code)]

use bytes::Bytes;
use fastwebsockets::{upgrade, FragmentCollector, WebSocketError};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    wsx_bench::fastws_echo(FragmentCollector::new(fut.await?)).await
}

async fn upgrade_request(
    mut req: Request<Incoming>,
) -> Result<Response<Empty<Bytes>>, WebSocketError> {
    let (response, fut) = upgrade::upgrade(&mut req)?;
    tokio::spawn(async move {
        // As upstream's example: the connection task runs outside tokio's cooperative budget.
        let _ = tokio::task::unconstrained(echo(fut)).await;
    });
    Ok(response)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = wsx_bench::ServerArgs::parse("echo-fastws", false);
    let listener = wsx_bench::listen(&args.listen).await?;
    loop {
        let tcp = wsx_bench::accept(&listener).await;
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(tcp);
            let _ = http1::Builder::new()
                .serve_connection(io, service_fn(upgrade_request))
                .with_upgrades()
                .await;
        });
    }
}
