use std::io::Write;
use std::process::ExitCode;

use chrysalis_client::NodeClient;
use chrysalis_protocol::attestation::Policy;
use clap::{Parser, Subcommand};
use serde_json::json;

/// Chrysalis: private chat with a provider node.
#[derive(Parser)]
#[command(name = "chrysalis", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Seal a prompt to a node, stream its answer, and print the verified receipt.
    Chat {
        /// The node's base URL, e.g. http://127.0.0.1:8080
        #[arg(long, env = "CHRYSALIS_NODE_URL")]
        node: String,
        /// Accept a node that runs outside any TEE (development only: nothing
        /// then proves who can read the prompt).
        #[arg(long)]
        allow_unattested: bool,
        /// Most tokens in the answer.
        #[arg(long, default_value_t = 512)]
        max_tokens: u32,
        /// Sampling temperature; 0 is greedy.
        #[arg(long, default_value_t = 0.7)]
        temperature: f32,
        /// The prompt.
        prompt: String,
    },
}

#[tokio::main]
async fn main() -> ExitCode {
    let Command::Chat { node, allow_unattested, max_tokens, temperature, prompt } = Cli::parse().command;
    let client = NodeClient::new(&node);
    let policy = Policy { allow_unattested, ..Policy::default() };
    let verified = match client.attest(&policy).await {
        Ok(verified) => verified,
        Err(error) => {
            eprintln!("chrysalis: refusing node {node}: {error}");
            return ExitCode::from(2);
        }
    };
    let chat = json!({
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": temperature,
    });
    let mut stdout = std::io::stdout();
    let outcome = client
        .chat(&verified, chat, |text| {
            let _ = stdout.write_all(text.as_bytes());
            let _ = stdout.flush();
        })
        .await;
    match outcome {
        Ok(outcome) => {
            println!();
            let receipt = &outcome.receipt;
            eprintln!(
                "receipt verified: request {}, {} prompt + {} completion tokens, model sha256 {}, finish {}",
                receipt.request_id.to_hex(),
                receipt.prompt_tokens,
                receipt.completion_tokens,
                hex_prefix(&receipt.model_sha256),
                outcome.finish_reason,
            );
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("\nchrysalis: {error}");
            ExitCode::FAILURE
        }
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect::<String>() + "…"
}
