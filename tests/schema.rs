//! The published JSON Schema (`assets/events.schema.json`) checked against
//! the types in `src/schema/`: every message, with every field set, has
//! exactly the properties the schema lists, and every enum has exactly its
//! names. A field added to a type fails to compile here until it is given
//! a value, and then fails until the schema lists it.
//!
//! `tests/telemetry.rs` checks the same schema against what a real sidecar
//! sends.

use std::collections::{BTreeMap, BTreeSet};

use meshtop::schema::{
    ClientStats, Counts, Direction, Dropped, ErrorKind, Hello, HttpProtocol, Lenient, ListenerDesc,
    Message, RequestEvent, RouteStats, SidecarDesc, Stats, StatusClasses, TcpEvent, TcpProtocol,
    UpstreamStats,
};
use serde_json::Value;

fn schema() -> Value {
    serde_json::from_str(include_str!("../assets/events.schema.json"))
        .expect("the schema is valid JSON")
}

/// The properties a schema object allows: its own, and those of the
/// definitions it includes with `allOf`.
fn properties(schema: &Value, object: &Value) -> BTreeSet<String> {
    let mut names: BTreeSet<String> = object["properties"]
        .as_object()
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default();
    for part in object["allOf"].as_array().into_iter().flatten() {
        let reference = part["$ref"].as_str().expect("allOf of references");
        let name = reference.trim_start_matches("#/$defs/");
        names.extend(properties(schema, &schema["$defs"][name]));
    }
    names
}

fn keys(value: &Value) -> BTreeSet<String> {
    value
        .as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

fn names(values: &Value) -> BTreeSet<String> {
    values
        .as_array()
        .expect("an enum")
        .iter()
        .filter_map(Value::as_str)
        .map(str::to_owned)
        .collect()
}

fn counts() -> Counts {
    let mut status = StatusClasses::default();
    status.add(200, 1);
    Counts {
        requests: 1,
        failures: 0,
        status,
        grpc_status: BTreeMap::from([("0".to_owned(), 1)]),
        errors: BTreeMap::from([("dns".to_owned(), 1)]),
        req_bytes: 1,
        resp_bytes: 1,
        latency: "HISTFAAAAB".into(),
    }
}

/// One message of each type, every field set (no `None`: absent values
/// are `null`, and `headers` only appears when set).
fn every_message() -> Vec<Message> {
    vec![
        Message::Hello(Hello {
            schema: 1,
            sidecar: SidecarDesc {
                name: "web".into(),
                namespace: Some("emojivoto".into()),
                version: "0.1.0".into(),
                started_at: "2026-12-04T07:00:00Z".into(),
            },
            listeners: vec![ListenerDesc {
                direction: Direction::Inbound,
                addr: "0.0.0.0:15006".into(),
                target: Some("127.0.0.1:8080".into()),
            }],
            addresses: vec!["10.0.0.7".into()],
            ts: Some("2026-12-04T07:00:00Z".into()),
        }),
        Message::Request(RequestEvent {
            ts: "2026-12-04T07:00:00.000001Z".into(),
            sidecar: "web".into(),
            direction: Direction::Outbound,
            protocol: HttpProtocol::Grpc.into(),
            client: "10.0.0.7:5000".into(),
            server: Some("10.0.0.9:8080".into()),
            authority: "voting-svc:8080".into(),
            method: Some("POST".into()),
            path: Some("/emojivoto.v1.VotingService/VoteDoughnut".into()),
            status: Some(200),
            grpc_status: Some(2),
            grpc_message: Some("ERROR".into()),
            error: Some(ErrorKind::UpstreamReset.into()),
            duration_ms: 1.5,
            ttfb_ms: Some(1.0),
            req_bytes: 5,
            resp_bytes: 7,
            headers: Some(BTreeMap::from([("x-request-id".into(), "abc".into())])),
        }),
        Message::Tcp(TcpEvent {
            ts: "2026-12-04T07:00:00.000001Z".into(),
            sidecar: "web".into(),
            direction: Direction::Outbound,
            protocol: TcpProtocol::Tls.into(),
            client: "10.0.0.7:5000".into(),
            server: Some("10.0.0.9:443".into()),
            sni: Some("example.com".into()),
            bytes_in: 1,
            bytes_out: 2,
            duration_ms: 3.0,
            error: Some(ErrorKind::ConnectRefused.into()),
        }),
        Message::Stats(Stats {
            ts: "2026-12-04T07:00:01Z".into(),
            sidecar: "web".into(),
            interval_ms: 1000,
            upstreams: vec![UpstreamStats {
                direction: Direction::Inbound,
                authority: "web-svc:80".into(),
                counts: counts(),
                routes: vec![RouteStats {
                    route: "GET /api/list".into(),
                    counts: counts(),
                }],
                clients: vec![ClientStats {
                    client: "10.0.0.8".into(),
                    counts: counts(),
                }],
            }],
            backfill: true,
        }),
        Message::Dropped(Dropped { count: 1, total: 2 }),
    ]
}

#[test]
fn every_message_has_exactly_the_properties_the_schema_lists() {
    let schema = schema();
    let defs = &schema["$defs"];
    let listed: BTreeSet<String> = schema["oneOf"]
        .as_array()
        .expect("oneOf")
        .iter()
        .map(|r| {
            let name = r["$ref"].as_str().expect("a reference");
            name.trim_start_matches("#/$defs/").to_owned()
        })
        .collect();
    let mut sent = BTreeSet::new();
    for message in every_message() {
        let value = serde_json::to_value(&message).expect("encodes");
        let kind = value["type"].as_str().expect("a type").to_owned();
        let def = &defs[&kind];
        assert_eq!(def["properties"]["type"]["const"], kind.as_str());
        assert_eq!(keys(&value), properties(&schema, def), "{kind}");
        let required: BTreeSet<String> = names(&def["required"]);
        assert!(required.is_subset(&keys(&value)), "{kind}");
        sent.insert(kind);
    }
    assert_eq!(
        sent, listed,
        "the schema lists every message type, and only those"
    );
}

#[test]
fn nested_objects_have_exactly_the_properties_the_schema_lists() {
    let schema = schema();
    let defs = &schema["$defs"];
    let messages: Vec<Value> = every_message()
        .iter()
        .map(|m| serde_json::to_value(m).expect("encodes"))
        .collect();
    let [hello, _, _, stats, _] = &messages[..] else {
        panic!("five messages");
    };
    let hello_props = &defs["hello"]["properties"];
    assert_eq!(
        keys(&hello["sidecar"]),
        properties(&schema, &hello_props["sidecar"])
    );
    assert_eq!(
        keys(&hello["listeners"][0]),
        properties(&schema, &hello_props["listeners"]["items"])
    );
    let upstream_schema = &defs["stats"]["properties"]["upstreams"]["items"];
    let upstream = &stats["upstreams"][0];
    assert_eq!(keys(upstream), properties(&schema, upstream_schema));
    for part in ["routes", "clients"] {
        assert_eq!(
            keys(&upstream[part][0]),
            properties(&schema, &upstream_schema["properties"][part]["items"]),
            "{part}"
        );
    }
    assert_eq!(
        keys(&upstream["status"]),
        names(&defs["counts"]["properties"]["status"]["required"])
    );
}

#[test]
fn every_enum_has_exactly_the_names_the_schema_lists() {
    let schema = schema();
    let defs = &schema["$defs"];
    let wire = |all: Vec<&'static str>| -> BTreeSet<String> {
        all.into_iter().map(str::to_owned).collect()
    };
    assert_eq!(
        names(&defs["direction"]["enum"]),
        wire(Direction::ALL.iter().map(|d| d.as_str()).collect())
    );
    assert_eq!(
        names(&defs["error"]["enum"]),
        wire(ErrorKind::ALL.iter().map(|e| e.as_str()).collect())
    );
    assert_eq!(
        names(&defs["request"]["properties"]["protocol"]["enum"]),
        wire(HttpProtocol::ALL.iter().map(|p| p.as_str()).collect())
    );
    assert_eq!(
        names(&defs["tcp"]["properties"]["protocol"]["enum"]),
        wire(TcpProtocol::ALL.iter().map(|p| p.as_str()).collect())
    );
    // Each name is the one serde writes and reads.
    for kind in ErrorKind::ALL {
        let json = serde_json::to_string(kind).expect("encodes");
        assert_eq!(json, format!("\"{}\"", kind.as_str()));
        assert_eq!(
            serde_json::from_str::<Lenient<ErrorKind>>(&json).expect("decodes"),
            *kind
        );
    }
    for protocol in HttpProtocol::ALL {
        let json = serde_json::to_string(protocol).expect("encodes");
        assert_eq!(
            serde_json::from_str::<HttpProtocol>(&json).expect("decodes"),
            *protocol
        );
    }
}
