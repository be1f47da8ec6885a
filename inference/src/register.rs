//! Registering the node with a Chrysalis platform (`--register URL`).

use std::time::Duration;

use chrysalis_protocol::registry::{ProviderRegistration, REGISTER_PATH};

/// Longest wait between attempts while the platform is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// Sends `registration` to the platform at `platform_url`, retrying with
/// backoff while the platform is unreachable or failing (it may start after
/// the node). A refusal (4xx) is final: retrying cannot change the answer.
pub async fn register(platform_url: String, token: Option<String>, registration: ProviderRegistration) {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap_or_default();
    let endpoint = format!("{}{REGISTER_PATH}", platform_url.trim_end_matches('/'));
    let mut backoff = Duration::from_millis(250);
    loop {
        let mut request = http.post(&endpoint).json(&registration);
        if let Some(token) = &token {
            request = request.bearer_auth(token);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => {
                tracing::info!(platform = %platform_url, url = %registration.url, "registered with the platform");
                return;
            }
            Ok(response) if response.status().is_client_error() => {
                let status = response.status();
                let body = response.text().await.unwrap_or_default();
                tracing::error!(platform = %platform_url, %status, body = %truncate(&body, 500),
                    "the platform refused the registration");
                return;
            }
            Ok(response) => {
                tracing::warn!(platform = %platform_url, status = %response.status(), "registration failed; retrying")
            }
            Err(error) => tracing::warn!(platform = %platform_url, %error, "platform unreachable; retrying"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

fn truncate(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((end, _)) => &text[..end],
        None => text,
    }
}
