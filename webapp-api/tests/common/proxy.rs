//! An HTTP proxy in front of a node that fails the way nodes fail: it can
//! cut the answer off mid-stream (the node died), stop sending mid-stream
//! (the node hangs), or swap the receipt trailer for one signed by another
//! key (a dishonest node).

use std::sync::{Arc, Mutex};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use chrysalis_protocol::receipt::SignedReceipt;
use chrysalis_protocol::sealed::RECEIPT_TRAILER;
use chrysalis_protocol::SigningKey;
use futures_util::StreamExt;
use http_body::Frame;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::oneshot;

#[derive(Debug, Clone, Copy)]
pub enum Fault {
    /// Forward everything.
    None,
    /// Break the connection after this many data frames of an answer.
    CutAfterFrames(usize),
    /// Send this many frames of an answer, then nothing, never ending.
    StallAfterFrames(usize),
    /// Re-sign the receipt trailer with a key the node never attested.
    ForgeReceipt,
    /// Hold the node's answer back this long before passing it on.
    Delay(std::time::Duration),
}

#[derive(Clone)]
struct Target {
    url: Arc<Mutex<String>>,
    fault: Fault,
    http: reqwest::Client,
}

pub struct Proxy {
    pub url: String,
    target: Arc<Mutex<String>>,
    shutdown: Option<oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<()>>,
}

impl Proxy {
    pub async fn start(target: &str, fault: Fault) -> Proxy {
        let target = Arc::new(Mutex::new(target.to_owned()));
        let state = Target { url: target.clone(), fault, http: reqwest::Client::new() };
        let app = axum::Router::new().fallback(forward).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (shutdown, stop) = oneshot::channel::<()>();
        let served = tokio::spawn(async move {
            let _ = axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = stop.await;
                })
                .await;
        });
        Proxy { url, target, shutdown: Some(shutdown), served: Some(served) }
    }

    /// Sends what follows to another node: as if the node restarted with new keys.
    pub fn retarget(&self, url: &str) {
        *self.target.lock().unwrap() = url.to_owned();
    }

    /// Stops listening and closes idle connections: the node is down.
    pub async fn stop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(served) = self.served.take() {
            let _ = served.await;
        }
    }
}

async fn forward(State(target): State<Target>, request: Request) -> Response {
    let (parts, body) = request.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let base = target.url.lock().unwrap().clone();
    let mut upstream = target.http.request(parts.method.clone(), format!("{base}{path}")).body(body);
    for (name, value) in parts.headers.iter().filter(|(name, _)| *name != "host") {
        upstream = upstream.header(name, value);
    }
    let response = upstream.send().await.unwrap();
    if let Fault::Delay(delay) = target.fault {
        if parts.method == axum::http::Method::POST {
            tokio::time::sleep(delay).await;
        }
    }
    let mut builder = Response::builder().status(response.status());
    for (name, value) in response.headers() {
        builder = builder.header(name, value);
    }
    let fault = target.fault;
    let frames = http_body_util::BodyStream::new(http::Response::<reqwest::Body>::from(response).into_body());
    let mut data_frames = 0;
    let faulty = frames.map(move |frame| -> Result<Frame<Bytes>, std::io::Error> {
        let frame = frame.map_err(std::io::Error::other)?;
        if frame.is_data() {
            data_frames += 1;
            if let Fault::CutAfterFrames(limit) = fault {
                if data_frames > limit {
                    return Err(std::io::Error::other("the node died"));
                }
            }
            return Ok(frame);
        }
        match (fault, frame.into_trailers()) {
            (Fault::ForgeReceipt, Ok(mut trailers)) => {
                let genuine = trailers.get(RECEIPT_TRAILER).unwrap().to_str().unwrap();
                let receipt = SignedReceipt::from_base64(genuine).unwrap().unverified().clone();
                let forged = receipt.sign(&SigningKey::from_bytes(&[7; 32])).to_base64();
                trailers.insert(RECEIPT_TRAILER, forged.parse().unwrap());
                Ok(Frame::trailers(trailers))
            }
            (_, Ok(trailers)) => Ok(Frame::trailers(trailers)),
            (_, Err(frame)) => Ok(frame),
        }
    });
    let body = match fault {
        Fault::StallAfterFrames(limit) => {
            Body::new(StreamBody::new(faulty.take(limit).chain(futures_util::stream::pending())))
        }
        _ => Body::new(StreamBody::new(faulty)),
    };
    builder.body(body).unwrap()
}
