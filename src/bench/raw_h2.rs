//! The transport's limit: a minimal HTTP/2 server (hyper, no gRPC stack) that answers every
//! POST with a pre-encoded OK `CheckResponse` (gRPC frame, `grpc-status: 0` trailer), whatever
//! the request. alp-authz against it says how much of the remaining gap is tonic's.

use std::{convert::Infallible, net::SocketAddr};

use anyhow::Context as _;
use http_body_util::{BodyExt as _, StreamBody, combinators::BoxBody};
use hyper::{
    Request, Response,
    body::{Bytes, Frame, Incoming},
    header::{CONTENT_TYPE, HeaderMap, HeaderValue},
    service::service_fn,
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use prost::Message as _;

use crate::authz::response;

type Body = BoxBody<Bytes, Infallible>;

fn answer(frame: &Bytes, trailers: &HeaderMap, post: bool) -> Response<Body> {
    if !post {
        let mut r = Response::new(BoxBody::new(http_body_util::Empty::new()));
        *r.status_mut() = hyper::StatusCode::METHOD_NOT_ALLOWED;
        return r;
    }
    let frames = [
        Ok(Frame::data(frame.clone())),
        Ok(Frame::trailers(trailers.clone())),
    ];
    let mut r = Response::new(StreamBody::new(futures::stream::iter(frames)).boxed());
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/grpc"));
    r
}

/// Serves on an ephemeral loopback port; returns its address.
pub async fn spawn() -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .context("cannot bind a loopback port")?;
    let addr = listener.local_addr().context("bound address")?;
    let body = response::allowed(true).encode_to_vec();
    let mut frame = Vec::with_capacity(body.len() + 5);
    frame.push(0);
    frame.extend_from_slice(&(body.len() as u32).to_be_bytes());
    frame.extend_from_slice(&body);
    let frame = Bytes::from(frame);
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = stream.set_nodelay(true);
            let (frame, trailers) = (frame.clone(), trailers.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<Incoming>| {
                    let post = req.method() == hyper::Method::POST;
                    let (frame, trailers) = (frame.clone(), trailers.clone());
                    async move {
                        // Read the request to its end, as a server must before it is done.
                        let _ = req.into_body().collect().await;
                        Ok::<_, Infallible>(answer(&frame, &trailers, post))
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}
