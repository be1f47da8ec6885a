//! The `chrysalis chat` command against a real node on the real model.

use std::process::Command;

use chrysalis_inference::config::NodeArgs;
use clap::Parser;

fn start_node() -> String {
    let model = concat!(env!("CARGO_MANIFEST_DIR"), "/../models/SmolLM2-135M-Instruct.Q4_1.gguf");
    let args = NodeArgs::parse_from([
        "chrysalis-node",
        "--model",
        model,
        "--listen=127.0.0.1:0",
        "--parallel=1",
        "--ctx-size=512",
    ]);
    let addr = chrysalis_inference::spawn(args).expect("node starts (run scripts/fetch-model for the model)");
    format!("http://{addr}")
}

fn chat(node: &str, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_chrysalis"))
        .args(["chat", "--node", node, "--temperature", "0", "--max-tokens", "24"])
        .args(extra)
        .arg("Name a primary colour.")
        .output()
        .unwrap()
}

#[test]
fn chat_refuses_an_unattested_node_unless_allowed() {
    let node = start_node();

    let refused = chat(&node, &[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("tee: none") && stderr.contains("--allow-unattested"), "{stderr}");
    assert!(refused.stdout.is_empty());

    let allowed = chat(&node, &["--allow-unattested"]);
    let stdout = String::from_utf8_lossy(&allowed.stdout);
    let stderr = String::from_utf8_lossy(&allowed.stderr);
    assert!(allowed.status.success(), "{stderr}");
    assert!(!stdout.trim().is_empty());
    assert!(stderr.contains("receipt verified"), "{stderr}");
    assert!(stderr.contains("completion tokens"), "{stderr}");
}
