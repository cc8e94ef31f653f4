//! `meshtop inject`: every kind with pods gets meshtop's init container and
//! sidecar, everything else stays as written, and the demo's manifests are
//! what inject makes of the plain ones.
//!
//! `demo/k8s/emojivoto-meshtop.yml` is checked against `inject` of
//! `demo/k8s/emojivoto.yml`. After changing either the plain manifests or
//! what inject adds, regenerate it with:
//!
//! ```sh
//! MESHTOP_UPDATE_MANIFESTS=1 cargo test --test inject
//! ```

use std::path::PathBuf;

use meshtop::inject::{InjectError, InjectOptions, inject, injected};
use saphyr::{LoadableYamlNode, Yaml};

fn fixture(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/inject")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()))
}

fn inject_default(input: &str) -> String {
    inject(input, &InjectOptions::default()).expect("valid manifests inject")
}

fn documents(text: &str) -> Vec<Yaml<'_>> {
    Yaml::load_from_str(text).unwrap_or_else(|err| panic!("invalid YAML ({err}):\n{text}"))
}

/// The node at a dotted path of keys and indexes, e.g. `spec.template.spec`.
fn at<'y, 'a>(node: &'y Yaml<'a>, path: &str) -> &'y Yaml<'a> {
    let mut node = node;
    for step in path.split('.').filter(|step| !step.is_empty()) {
        node = match step.parse::<usize>() {
            Ok(index) => node.as_sequence_get(index),
            Err(_) => node.as_mapping_get(step),
        }
        .unwrap_or_else(|| panic!("no {step} in {path}"));
    }
    node
}

fn text<'y>(node: &'y Yaml, path: &str) -> &'y str {
    at(node, path)
        .as_str()
        .unwrap_or_else(|| panic!("{path} is not a string"))
}

fn strings<'y>(node: &'y Yaml, path: &str) -> Vec<&'y str> {
    at(node, path)
        .as_vec()
        .unwrap_or_else(|| panic!("{path} is not a sequence"))
        .iter()
        .map(|item| item.as_str().unwrap_or_else(|| panic!("{path}: {item:?}")))
        .collect()
}

fn integer(node: &Yaml, path: &str) -> i64 {
    at(node, path)
        .as_integer()
        .unwrap_or_else(|| panic!("{path} is not an integer"))
}

fn boolean(node: &Yaml, path: &str) -> bool {
    at(node, path)
        .as_bool()
        .unwrap_or_else(|| panic!("{path} is not a boolean"))
}

fn names<'y>(list: Option<&'y Yaml>) -> Vec<&'y str> {
    list.and_then(Yaml::as_vec)
        .map(|items| items.iter().map(|item| text(item, "name")).collect())
        .unwrap_or_default()
}

fn env_field_path<'y>(container: &'y Yaml, name: &str) -> &'y str {
    let env = at(container, "env").as_vec().expect("env is a sequence");
    let var = env
        .iter()
        .find(|var| text(var, "name") == name)
        .unwrap_or_else(|| panic!("no {name} in env"));
    text(var, "valueFrom.fieldRef.fieldPath")
}

/// Checks the pod spec `after` is `before` with meshtop's two containers at
/// the head of its init containers, as `options` make them, and nothing else
/// changed.
fn assert_injected(before: &Yaml, after: &Yaml, options: &InjectOptions) {
    let init_containers = at(after, "initContainers")
        .as_vec()
        .expect("initContainers is a sequence");
    let mut expected_names = vec!["meshtop-init", "meshtop-proxy"];
    expected_names.extend(names(before.as_mapping_get("initContainers")));
    assert_eq!(names(Some(at(after, "initContainers"))), expected_names);

    let image = options.image.as_str();
    let uid = i64::from(options.proxy_uid);
    let admin = i64::from(options.admin_port);

    let init = &init_containers[0];
    assert_eq!(text(init, "image"), image);
    assert_eq!(strings(init, "command"), ["meshtop"]);
    assert_eq!(
        strings(init, "args")[..3],
        ["init", "--proxy-uid", &uid.to_string()]
    );
    assert_eq!(integer(init, "securityContext.runAsUser"), 0);
    assert!(!boolean(init, "securityContext.runAsNonRoot"));
    assert!(!boolean(init, "securityContext.privileged"));
    assert_eq!(
        strings(init, "securityContext.capabilities.add"),
        ["NET_ADMIN"]
    );
    assert_eq!(strings(init, "securityContext.capabilities.drop"), ["ALL"]);

    let proxy = &init_containers[1];
    assert_eq!(text(proxy, "image"), image);
    assert_eq!(text(proxy, "restartPolicy"), "Always", "a native sidecar");
    assert_eq!(strings(proxy, "command"), ["meshtop"]);
    // Finding 9 of issue #15: /events was bound to 0.0.0.0. Everything on
    // loopback (kubectl port-forward); probes and metrics on the pod IP,
    // where the proxy serves /events only behind the optional token.
    assert_eq!(
        strings(proxy, "args"),
        [
            "proxy",
            "--admin",
            &format!("127.0.0.1:{admin}"),
            "--public-admin",
            &format!("$(POD_IP):{admin}"),
        ]
    );
    assert_eq!(env_field_path(proxy, "POD_IP"), "status.podIP");
    assert_eq!(integer(proxy, "securityContext.runAsUser"), uid);
    assert!(boolean(proxy, "securityContext.runAsNonRoot"));
    assert!(!boolean(proxy, "securityContext.allowPrivilegeEscalation"));
    assert!(boolean(proxy, "securityContext.readOnlyRootFilesystem"));
    assert_eq!(strings(proxy, "securityContext.capabilities.drop"), ["ALL"]);
    assert!(
        at(proxy, "securityContext.capabilities")
            .as_mapping_get("add")
            .is_none()
    );
    assert_eq!(env_field_path(proxy, "POD_NAME"), "metadata.name");
    assert_eq!(env_field_path(proxy, "POD_NAMESPACE"), "metadata.namespace");
    for probe in ["readinessProbe", "startupProbe"] {
        assert_eq!(text(proxy, &format!("{probe}.httpGet.path")), "/readyz");
        assert_eq!(integer(proxy, &format!("{probe}.httpGet.port")), admin);
    }
    assert_eq!(text(proxy, "resources.requests.cpu"), "10m");
    assert_eq!(text(proxy, "resources.requests.memory"), "20Mi");
    assert!(
        at(proxy, "resources.limits")
            .as_mapping_get("memory")
            .is_some()
    );

    // The pod's own init containers follow, unchanged; everything else of
    // the pod spec is as it was, in the same order.
    let own = before
        .as_mapping_get("initContainers")
        .and_then(Yaml::as_vec)
        .map(Vec::as_slice)
        .unwrap_or_default();
    assert_eq!(&init_containers[2..], own);
    let rest = |spec: &Yaml| -> Vec<(String, String)> {
        spec.as_mapping()
            .expect("a pod spec is a mapping")
            .iter()
            .filter(|(key, _)| key.as_str() != Some("initContainers"))
            .map(|(key, value)| (format!("{key:?}"), format!("{value:?}")))
            .collect()
    };
    assert_eq!(rest(after), rest(before));
}

/// The fixtures with one kind each, and where that kind keeps its pod spec.
const KINDS: &[(&str, &str)] = &[
    ("deployment.yml", "spec.template.spec"),
    ("statefulset.yml", "spec.template.spec"),
    ("daemonset.yml", "spec.template.spec"),
    ("replicaset.yml", "spec.template.spec"),
    ("job.yml", "spec.template.spec"),
    ("cronjob.yml", "spec.jobTemplate.spec.template.spec"),
    ("pod.yml", "spec"),
    ("flow.yml", "spec"),
];

#[test]
fn every_kind_with_pods_gets_the_init_container_and_the_sidecar() {
    for (name, pod_spec) in KINDS {
        let input = fixture(name);
        let output = inject_default(&input);
        let before = documents(&input);
        let after = documents(&output);
        assert_eq!(after.len(), before.len(), "{name}");
        let (kind_before, kind_after) = (&before[0], &after[0]);
        assert_injected(
            at(kind_before, pod_spec),
            at(kind_after, pod_spec),
            &InjectOptions::default(),
        );
    }
}

#[test]
fn comments_and_layout_survive_around_the_insertions() {
    // Every line of these inputs is in the output, in the same order: only
    // the new containers were added between them.
    for name in [
        "deployment.yml",
        "statefulset.yml",
        "daemonset.yml",
        "job.yml",
        "cronjob.yml",
        "pod.yml",
        "list.yml",
    ] {
        let input = fixture(name);
        let output = inject_default(&input);
        let mut output_lines = output.lines();
        for line in input.lines() {
            assert!(
                output_lines.any(|out| out == line),
                "{name}: {line:?} lost or moved in\n{output}"
            );
        }
    }
    // A flow mapping stays one: the containers join it, the rest survives.
    let output = inject_default(&fixture("flow.yml"));
    assert!(output.starts_with("# Pod specs in flow style"), "{output}");
    assert!(
        output.contains("\nspec: {restartPolicy: Always, initContainers: [{name: meshtop-init, ")
    );

    // The new list is laid out as the pod's containers are.
    let output = inject_default(&fixture("job.yml"));
    assert!(
        output.contains("      initContainers:\n      - name: meshtop-init\n"),
        "{output}"
    );
    let output = inject_default(&fixture("deployment.yml"));
    assert!(
        output.contains("      initContainers:\n        - name: meshtop-init\n"),
        "{output}"
    );
}

#[test]
fn comments_survive_in_every_document_of_a_stream() {
    let input = "\
# The stream's header.
---
# The first pod.
kind: Pod
spec:
  containers: # the apps
  - name: a
--- # the second pod
kind: Pod
spec:
  # Its own init container.
  initContainers:
  - name: setup # prepares
  containers:
  - name: b
...
# After the end.
---
kind: ConfigMap # no pod
";
    let output = injected(input, &InjectOptions::default()).expect("injects");
    assert_eq!(output.warnings, [], "nothing was given up");
    assert_eq!(output.text.matches("- name: meshtop-proxy\n").count(), 2);
    let mut output_lines = output.text.lines();
    for line in input.lines() {
        assert!(
            output_lines.any(|out| out == line),
            "{line:?} lost or moved in\n{}",
            output.text
        );
    }
}

#[test]
fn a_comment_above_the_containers_stays_above_them() {
    let input = "\
kind: Pod
spec:
  # The application.
  containers:
  - name: app
";
    let output = inject_default(input);
    let init = output.find("initContainers:").expect("added");
    let comment = output.find("# The application.").expect("kept");
    assert!(init < comment, "{output}");
    assert!(
        output.contains("# The application.\n  containers:\n"),
        "{output}"
    );
}

#[test]
fn files_with_crlf_line_endings_keep_them() {
    let input = "kind: Pod\r\nspec:\r\n  containers:\r\n  - name: app\r\n";
    let output = inject_default(input);
    assert!(output.contains("meshtop-proxy"));
    assert_eq!(output.matches('\n').count(), output.matches("\r\n").count());
}

#[test]
fn an_empty_init_container_list_is_filled() {
    let output = inject_default(&fixture("replicaset.yml"));
    assert!(
        output.contains("      initContainers:\n      - name: meshtop-init\n"),
        "{output}"
    );
    assert!(!output.contains("initContainers: []"), "{output}");
}

/// An empty value written on the line below its key goes with its line,
/// or alone when a comment follows it, which stays.
#[test]
fn an_empty_init_container_list_below_its_key_is_filled() {
    for (input, kept) in [
        (
            "kind: Pod\nspec:\n  initContainers:\n    []\n  containers:\n  - name: app\n",
            "",
        ),
        (
            "kind: Pod\nspec:\n  initContainers: # none\n    ~ # yet\n  containers:\n  - name: app\n",
            "    # yet\n",
        ),
    ] {
        let output = inject_default(input);
        let doc = &documents(&output)[0];
        assert_eq!(
            names(Some(at(doc, "spec.initContainers"))),
            ["meshtop-init", "meshtop-proxy"]
        );
        assert!(!output.contains("[]") && !output.contains('~'), "{output}");
        assert!(
            output.ends_with(&format!("{kept}  containers:\n  - name: app\n")),
            "{output}"
        );
        assert_eq!(inject_default(&output), output, "injected twice");
    }
}

#[test]
fn injecting_twice_changes_nothing() {
    let names = KINDS
        .iter()
        .map(|(name, _)| *name)
        .chain(["list.yml", "passthrough.yml"]);
    for name in names {
        let once = inject_default(&fixture(name));
        let twice = inject_default(&once);
        assert_eq!(twice, once, "{name}");
    }
}

#[test]
fn a_pod_with_one_of_the_containers_gets_only_the_other() {
    let input = "\
apiVersion: v1
kind: Pod
metadata:
  name: half
spec:
  containers:
  - name: app
    image: example/app:1
  - name: meshtop-proxy
    image: example/meshtop:old
";
    let output = inject_default(input);
    let pod = &documents(&output)[0];
    assert_eq!(
        names(Some(at(pod, "spec.initContainers"))),
        ["meshtop-init"]
    );
    assert_eq!(
        names(Some(at(pod, "spec.containers"))),
        ["app", "meshtop-proxy"]
    );
}

/// Into a list with items of its own, the containers go in its own layout:
/// block items at its items' column (above the comments of the item they
/// precede), flow mappings among flow items, whatever the lines.
#[test]
fn containers_go_into_existing_lists_in_their_layout() {
    struct Case {
        input: &'static str,
        init_containers: &'static str,
        names: &'static [&'static str],
        fragments: &'static [&'static str],
    }
    let cases = [
        Case {
            input: "kind: Pod\nspec:\n  initContainers:\n    # prepares\n    - name: setup\n  containers:\n    - name: app\n",
            init_containers: "spec.initContainers",
            names: &["meshtop-init", "meshtop-proxy", "setup"],
            fragments: &[
                "  initContainers:\n    - name: meshtop-init\n      image: ",
                "\n    - name: meshtop-proxy\n      image: ",
                "\n    # prepares\n    - name: setup\n  containers:\n",
            ],
        },
        // The init container is there: the sidecar goes after it, at the
        // end of a file without a final newline.
        Case {
            input: "kind: Pod\nspec:\n  containers:\n  - name: app\n  initContainers:\n  - name: setup\n  - name: meshtop-init\n    image: mine",
            init_containers: "spec.initContainers",
            names: &["setup", "meshtop-init", "meshtop-proxy"],
            fragments: &[
                "  - name: meshtop-init\n    image: mine\n  - name: meshtop-proxy\n    image: ",
            ],
        },
        Case {
            input: "kind: Pod\nspec:\n  initContainers: [{name: setup}]  # own\n  containers:\n  - name: app\n",
            init_containers: "spec.initContainers",
            names: &["meshtop-init", "meshtop-proxy", "setup"],
            fragments: &[
                "  initContainers: [{name: meshtop-init, image: ",
                "}, {name: meshtop-proxy, image: ",
                "}, {name: setup}]  # own\n  containers:\n  - name: app\n",
            ],
        },
        Case {
            input: "kind: Deployment\nspec:\n  template:\n    spec: {initContainers: [\n        {name: setup},\n        {name: meshtop-init}\n      ], containers: [{name: app}]}\n",
            init_containers: "spec.template.spec.initContainers",
            names: &["setup", "meshtop-init", "meshtop-proxy"],
            fragments: &[
                "    spec: {initContainers: [\n        {name: setup},\n        {name: meshtop-init}, {name: meshtop-proxy, image: ",
                "}\n      ], containers: [{name: app}]}\n",
            ],
        },
        Case {
            input: "kind: Pod\nspec: {initContainers: ~, containers: [{name: app}]}\n",
            init_containers: "spec.initContainers",
            names: &["meshtop-init", "meshtop-proxy"],
            fragments: &[
                "spec: {initContainers: [{name: meshtop-init, image: ",
                "}], containers: [{name: app}]}\n",
            ],
        },
    ];
    for case in cases {
        let output = inject_default(case.input);
        let doc = &documents(&output)[0];
        assert_eq!(
            names(Some(at(doc, case.init_containers))),
            case.names,
            "{output}"
        );
        for fragment in case.fragments {
            assert!(output.contains(fragment), "{fragment:?} not in\n{output}");
        }
        assert_eq!(inject_default(&output), output, "injected twice");
    }
}

/// A pod spec given by an alias would be edited where its anchor is, for
/// every alias of it: refused, with the alias's line.
#[test]
fn a_pod_spec_that_is_an_alias_is_refused_with_its_line() {
    let input = "kind: ConfigMap\n---\nkind: Pod\nmetadata: {name: web}\nx: &spec\n  containers:\n  - name: app\nspec: *spec\n";
    let err = inject(input, &InjectOptions::default()).expect_err("an alias");
    let InjectError::Unsupported {
        document,
        line,
        reason,
    } = &err
    else {
        panic!("{err}");
    };
    assert_eq!((*document, *line), (2, 8), "{err}");
    assert!(reason.starts_with("Pod web: "), "{err}");
    assert!(reason.contains("alias"), "{err}");
}

/// Pods left without meshtop are named, each with why.
#[test]
fn pods_left_alone_are_said() {
    let input = "\
kind: Pod
metadata: {name: agent}
spec:
  hostNetwork: true
  containers: [{name: agent}]
---
kind: List
items:
- kind: Deployment
  metadata: {name: web}
  spec:
    template:
      spec:
        initContainers: setup
        containers: [{name: web}]
- kind: Job
  metadata: {name: batch}
  spec: {template: {spec: {restartPolicy: Never}}}
- kind: Pod
  metadata: {name: fine}
  spec: {containers: [{name: app}]}
";
    let output = injected(input, &InjectOptions::default()).expect("injects");
    let warnings: Vec<String> = output.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "document 1, Pod agent: left alone: it runs on the host network \
             (hostNetwork: true), whose iptables meshtop init would rewrite",
            "document 2, Deployment web: left alone: its initContainers is not a list",
            "document 2, Job batch: left alone: its pod spec has no containers list",
        ]
    );
    assert_eq!(
        output.text.matches("meshtop-proxy").count(),
        1,
        "{}",
        output.text
    );
}

#[test]
fn kinds_without_pods_pass_through_byte_for_byte() {
    let input = fixture("passthrough.yml");
    assert_eq!(inject_default(&input), input);
}

#[test]
fn pods_on_the_host_network_are_left_alone() {
    let input = fixture("daemonset.yml");
    let output = inject_default(&input);
    let (_, host_network_in) = input.split_once("\n---\n").expect("two documents");
    let (injected, host_network_out) = output.split_once("\n---\n").expect("two documents");
    assert_eq!(host_network_out, host_network_in);
    assert!(injected.contains("meshtop-proxy"));
}

#[test]
fn every_pod_of_a_list_gets_the_sidecar() {
    let input = fixture("list.yml");
    let output = inject_default(&input);
    let (before, after) = (&documents(&input)[0], &documents(&output)[0]);
    for deployment in ["items.0", "items.2"] {
        let pod_spec = format!("{deployment}.spec.template.spec");
        assert_injected(
            at(before, &pod_spec),
            at(after, &pod_spec),
            &InjectOptions::default(),
        );
    }
    assert_eq!(at(after, "items.1"), at(before, "items.1"), "the Service");
    assert_eq!(at(after, "metadata"), at(before, "metadata"));
}

#[test]
fn the_options_shape_both_containers() {
    let options = InjectOptions {
        image: "registry.example:5000/meshtop:dev".to_owned(),
        proxy_uid: 2102,
        skip_inbound_ports: vec![8443, 9000],
        skip_outbound_ports: vec![5432, 6379],
        admin_port: 15190,
    };
    let input = fixture("deployment.yml");
    let output = inject(&input, &options).expect("injects");
    let (before, after) = (&documents(&input)[0], &documents(&output)[0]);
    assert_injected(
        at(before, "spec.template.spec"),
        at(after, "spec.template.spec"),
        &options,
    );
    let init = at(after, "spec.template.spec.initContainers.0");
    assert_eq!(
        strings(init, "args"),
        [
            "init",
            "--proxy-uid",
            "2102",
            "--skip-inbound-ports",
            "8443,9000,15190",
            "--skip-outbound-ports",
            "5432,6379",
        ]
    );
    let proxy = at(after, "spec.template.spec.initContainers.1");
    assert_eq!(integer(proxy, "ports.0.containerPort"), 15190);
}

#[test]
fn the_default_options_skip_only_the_admin_port() {
    let output = inject_default(&fixture("pod.yml"));
    let pod = &documents(&output)[0];
    let init = at(pod, "spec.initContainers.0");
    assert_eq!(
        strings(init, "args"),
        [
            "init",
            "--proxy-uid",
            "1337",
            "--skip-inbound-ports",
            "15090"
        ]
    );
}

#[test]
fn options_that_cannot_make_a_working_pod_are_refused() {
    let input = fixture("pod.yml");
    let root = InjectOptions {
        proxy_uid: 0,
        ..InjectOptions::default()
    };
    assert!(matches!(
        inject(&input, &root),
        Err(InjectError::InvalidOptions(_))
    ));
    let clashing = InjectOptions {
        admin_port: 15006,
        ..InjectOptions::default()
    };
    let err = inject(&input, &clashing).expect_err("15006 is the inbound port");
    assert!(err.to_string().contains("15006"), "{err}");
}

#[test]
fn invalid_yaml_names_its_document_and_line() {
    let err = inject(&fixture("invalid.yml"), &InjectOptions::default())
        .expect_err("bad indentation in document 2");
    assert!(
        matches!(
            err,
            InjectError::InvalidYaml {
                document: 2,
                line: 16,
                ..
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("document 2") && message.contains("line 16"),
        "{message}"
    );
    assert!(!message.contains('\n'), "one line: {message}");

    // A leading comment is not a document; lines count from the very start.
    let input = "# header\n---\na: 1\n---\nb: 'open\n";
    let err = inject(input, &InjectOptions::default()).expect_err("unterminated quote");
    assert!(
        matches!(err, InjectError::InvalidYaml { document: 2, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("line 5"), "{err}");
}

#[test]
fn an_empty_input_gives_an_empty_output() {
    assert_eq!(inject_default(""), "");
    let comments = "# nothing here yet\n\n";
    assert_eq!(inject_default(comments), comments);
}

#[test]
fn the_demo_manifests_are_up_to_date() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("demo/k8s");
    let plain = std::fs::read_to_string(dir.join("emojivoto.yml")).expect("demo/k8s/emojivoto.yml");
    let injected = inject_default(&plain);
    let path = dir.join("emojivoto-meshtop.yml");
    if std::env::var_os("MESHTOP_UPDATE_MANIFESTS").is_some() {
        std::fs::write(&path, &injected).expect("write demo/k8s/emojivoto-meshtop.yml");
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == injected,
        "demo/k8s/emojivoto-meshtop.yml is not `meshtop inject` of emojivoto.yml; \
         regenerate it: MESHTOP_UPDATE_MANIFESTS=1 cargo test --test inject"
    );
}

#[test]
fn the_demo_runs_every_emojivoto_service_with_meshtop() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("demo/k8s");
    let plain = std::fs::read_to_string(dir.join("emojivoto.yml")).expect("demo/k8s/emojivoto.yml");
    let injected = inject_default(&plain);
    let docs = documents(&injected);
    let of_kind = |kind: &str| -> Vec<&Yaml> {
        docs.iter()
            .filter(|doc| doc.as_mapping_get("kind").and_then(Yaml::as_str) == Some(kind))
            .collect()
    };
    let mut deployments: Vec<&str> = Vec::new();
    for deployment in of_kind("Deployment") {
        assert_eq!(text(deployment, "metadata.namespace"), "emojivoto");
        let pod = at(deployment, "spec.template.spec");
        assert_eq!(
            names(Some(at(pod, "initContainers"))),
            ["meshtop-init", "meshtop-proxy"]
        );
        assert_eq!(
            text(pod, "serviceAccountName"),
            text(deployment, "metadata.name")
        );
        deployments.push(text(deployment, "metadata.name"));
    }
    assert_eq!(deployments, ["emoji", "voting", "web", "vote-bot"]);

    let services: Vec<(&str, i64, i64)> = of_kind("Service")
        .into_iter()
        .map(|service| {
            (
                text(service, "metadata.name"),
                integer(service, "spec.ports.0.port"),
                integer(service, "spec.ports.0.targetPort"),
            )
        })
        .collect();
    assert_eq!(
        services,
        [
            ("emoji-svc", 8080, 8080),
            ("voting-svc", 8080, 8080),
            ("web-svc", 80, 8080)
        ]
    );
    assert_eq!(of_kind("ServiceAccount").len(), 4);
    assert_eq!(text(of_kind("Namespace")[0], "metadata.name"), "emojivoto");

    let bot = at(of_kind("Deployment")[3], "spec.template.spec.containers.0");
    assert_eq!(strings(bot, "command"), ["emojivoto-vote-bot"]);
    assert_eq!(
        text(bot, "image"),
        "docker.l5d.io/buoyantio/emojivoto-web:v11"
    );
    assert_eq!(text(bot, "env.0.value"), "web-svc.emojivoto:80");
}
