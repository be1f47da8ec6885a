//! The served OpenAPI document describes every route the router has.

use std::collections::BTreeSet;

#[test]
fn the_openapi_document_covers_every_route() {
    let document: serde_json::Value =
        serde_json::from_str(chrysalis_api::routes::OPENAPI).expect("openapi.json parses");
    assert!(document["openapi"].as_str().unwrap().starts_with("3."));
    let documented: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| item.as_object().unwrap().keys().map(move |method| (path.clone(), method.clone())))
        .filter(|(_, method)| ["get", "post", "put", "patch", "delete"].contains(&method.as_str()))
        .collect();

    let source = include_str!("../src/routes/mod.rs");
    let mut routed = BTreeSet::new();
    for line in source.lines().filter(|l| l.trim_start().starts_with(".route(\"")) {
        let path = line.split('"').nth(1).unwrap().to_owned();
        for method in ["get", "post", "put", "patch", "delete"] {
            if line.contains(&format!("{method}(")) {
                routed.insert((path.clone(), method.to_owned()));
            }
        }
    }
    assert!(routed.len() >= 17, "routes were read: {routed:?}");
    assert_eq!(routed, documented, "routes and openapi.json differ");
}
