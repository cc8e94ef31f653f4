//! Finding the pods of a manifest (Pod, Deployment, StatefulSet, DaemonSet,
//! ReplicaSet, ReplicationController, Job, CronJob, `List`s of them) on the
//! parsed tree, planning the insertions, and making them on the tree: what
//! the output must mean.

use std::borrow::Cow;

use saphyr::{Mapping, ScalarStyle, Yaml};

use super::sidecars::{Sidecar, SidecarTrees};
use super::{INIT_CONTAINER, LeftAlone, PROXY_CONTAINER};

// ---------------------------------------------------------------------------
// Finding the pods, on the parsed tree.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Step {
    Key(&'static str),
    Index(usize),
}
/// What `initContainers` is before the edit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum InitList {
    /// A sequence with items: the sidecars are inserted among them.
    Sequence,
    /// No such key: it is added before `containers`.
    Missing,
    /// Null or `[]`: its value is replaced.
    Empty,
}

/// The insertions into one pod spec.
#[derive(Debug)]
pub(super) struct PodEdit {
    /// From the document's root to the pod spec.
    pub(super) path: Vec<Step>,
    pub(super) init_list: InitList,
    /// How many items `initContainers` has before the edit.
    pub(super) existing: usize,
    /// Applied in order, each at its index of `initContainers`.
    pub(super) inserts: Vec<(usize, Sidecar)>,
}

/// What becomes of a document's pods.
#[derive(Debug, Default)]
pub(super) struct Plan {
    pub(super) edits: Vec<PodEdit>,
    /// The pod specs left as they were, by their paths, and why.
    pub(super) left_alone: Vec<(Vec<Step>, LeftAlone)>,
}

pub(super) fn plan_document(doc: &Yaml) -> Plan {
    let mut plan = Plan::default();
    plan_object(doc, &mut Vec::new(), &mut plan);
    plan
}

/// The plan of a `List` item parsed alone: a sequence of that one item.
pub(super) fn plan_item(doc: &Yaml) -> Plan {
    let mut plan = Plan::default();
    if let Yaml::Sequence(items) = doc
        && let [item] = items.as_slice()
    {
        plan_object(item, &mut vec![Step::Index(0)], &mut plan);
    }
    plan
}

pub(super) fn plan_object(object: &Yaml, at: &mut Vec<Step>, plan: &mut Plan) {
    let Some(kind) = get(object, "kind").and_then(as_str) else {
        return;
    };
    let to_pod_spec: &[&'static str] = match kind {
        "Pod" => &["spec"],
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => &["spec", "template", "spec"],
        "CronJob" => &["spec", "jobTemplate", "spec", "template", "spec"],
        kind if kind.ends_with("List") => {
            if let Some(Yaml::Sequence(items)) = get(object, "items") {
                for (index, item) in items.iter().enumerate() {
                    at.extend([Step::Key("items"), Step::Index(index)]);
                    plan_object(item, at, plan);
                    at.truncate(at.len() - 2);
                }
            }
            return;
        }
        _ => return,
    };
    let mut spec = object;
    for key in to_pod_spec {
        match get(spec, key) {
            Some(inner) => spec = inner,
            None => return,
        }
    }
    let mut path = at.clone();
    path.extend(to_pod_spec.iter().map(|key| Step::Key(key)));
    match plan_pod(spec) {
        Ok(Some((init_list, existing, inserts))) => plan.edits.push(PodEdit {
            path,
            init_list,
            existing,
            inserts,
        }),
        Ok(None) => {}
        Err(why) => plan.left_alone.push((path, why)),
    }
}

/// What `initContainers` is, how many items it has and what goes into it;
/// `None` when the pod has meshtop already.
pub(super) type PodPlan = Option<(InitList, usize, Vec<(usize, Sidecar)>)>;

pub(super) fn plan_pod(spec: &Yaml) -> Result<PodPlan, LeftAlone> {
    if get(spec, "hostNetwork")
        .and_then(as_str)
        .is_some_and(|value| ["true", "yes", "on"].contains(&value.to_ascii_lowercase().as_str()))
    {
        return Err(LeftAlone::HostNetwork);
    }
    let Some(Yaml::Sequence(containers)) = get(spec, "containers") else {
        return Err(LeftAlone::NoContainers);
    };
    let (init_list, init_containers): (InitList, &[Yaml]) = match get(spec, "initContainers") {
        None => (InitList::Missing, &[]),
        Some(Yaml::Sequence(list)) if list.is_empty() => (InitList::Empty, &[]),
        Some(Yaml::Sequence(list)) => (InitList::Sequence, list),
        Some(value) if is_null(value) => (InitList::Empty, &[]),
        Some(_) => return Err(LeftAlone::InitContainersNotAList),
    };
    let name = |container: &Yaml| get(container, "name").and_then(as_str).map(str::to_owned);
    let present: Vec<String> = containers
        .iter()
        .chain(init_containers)
        .filter_map(name)
        .collect();
    let mut list: Vec<Option<String>> = init_containers.iter().map(name).collect();
    let mut inserts = Vec::new();
    if !present.iter().any(|n| n == INIT_CONTAINER) {
        list.insert(0, Some(INIT_CONTAINER.to_owned()));
        inserts.push((0, Sidecar::Init));
    }
    if !present.iter().any(|n| n == PROXY_CONTAINER) {
        let at = list
            .iter()
            .position(|n| n.as_deref() == Some(INIT_CONTAINER))
            .map_or(0, |index| index + 1);
        list.insert(at, Some(PROXY_CONTAINER.to_owned()));
        inserts.push((at, Sidecar::Proxy));
    }
    Ok((!inserts.is_empty()).then_some((init_list, init_containers.len(), inserts)))
}

pub(super) fn is_key(node: &Yaml, key: &str) -> bool {
    as_str(node) == Some(key)
}

pub(super) fn get<'y, 'a>(node: &'y Yaml<'a>, key: &str) -> Option<&'y Yaml<'a>> {
    match node {
        Yaml::Mapping(map) => map.iter().find(|(k, _)| is_key(k, key)).map(|(_, v)| v),
        _ => None,
    }
}

pub(super) fn get_mut<'y, 'a>(node: &'y mut Yaml<'a>, key: &str) -> Option<&'y mut Yaml<'a>> {
    match node {
        Yaml::Mapping(map) => map.iter_mut().find(|(k, _)| is_key(k, key)).map(|(_, v)| v),
        _ => None,
    }
}

pub(super) fn as_str<'y>(node: &'y Yaml) -> Option<&'y str> {
    match node {
        Yaml::Representation(text, _, None) => Some(text),
        _ => None,
    }
}

pub(super) fn is_null(node: &Yaml) -> bool {
    matches!(node, Yaml::Representation(text, ScalarStyle::Plain, None)
        if ["", "~", "null", "Null", "NULL"].contains(&text.as_ref()))
}

// ---------------------------------------------------------------------------
// The insertion on the parsed tree: what the output must mean.

pub(super) fn apply_to_tree<'a>(doc: &mut Yaml<'a>, edit: &PodEdit, trees: &SidecarTrees<'a>) {
    let mut node = doc;
    for step in &edit.path {
        let next = match (step, node) {
            (Step::Key(key), node) => get_mut(node, key),
            (Step::Index(index), Yaml::Sequence(items)) => items.get_mut(*index),
            _ => None,
        };
        let Some(next) = next else { return };
        node = next;
    }
    let Yaml::Mapping(spec) = node else { return };
    let mut list = match edit.init_list {
        InitList::Sequence => match spec
            .iter_mut()
            .find(|(k, _)| is_key(k, "initContainers"))
            .map(|(_, v)| v)
        {
            Some(Yaml::Sequence(list)) => std::mem::take(list),
            _ => return,
        },
        InitList::Missing | InitList::Empty => Vec::new(),
    };
    for &(at, sidecar) in &edit.inserts {
        list.insert(at.min(list.len()), trees.tree(sidecar).clone());
    }
    match edit.init_list {
        InitList::Sequence | InitList::Empty => {
            if let Some((_, value)) = spec.iter_mut().find(|(k, _)| is_key(k, "initContainers")) {
                *value = Yaml::Sequence(list);
            }
        }
        InitList::Missing => insert_before_containers(spec, Yaml::Sequence(list)),
    }
}

/// Adds `initContainers` just before `containers`, where yaml-edit puts it
/// and where a reader looks for it.
pub(super) fn insert_before_containers<'a>(spec: &mut Mapping<'a>, init_containers: Yaml<'a>) {
    let key = Yaml::Representation(Cow::Borrowed("initContainers"), ScalarStyle::Plain, None);
    let mut pending = Some(init_containers);
    let entries = std::mem::take(spec);
    for (k, v) in entries {
        if is_key(&k, "containers")
            && let Some(value) = pending.take()
        {
            spec.insert(key.clone(), value);
        }
        spec.insert(k, v);
    }
    if let Some(value) = pending {
        spec.insert(key, value);
    }
}

/// `docs` with the planned insertions made on the tree: what the output
/// must mean.
pub(super) fn expect<'a>(
    docs: &[Yaml<'a>],
    plans: &[Plan],
    trees: &SidecarTrees<'a>,
) -> Vec<Yaml<'a>> {
    let mut expected = docs.to_vec();
    for (doc, plan) in expected.iter_mut().zip(plans) {
        for edit in &plan.edits {
            apply_to_tree(doc, edit, trees);
        }
    }
    expected
}

/// The object of `doc` whose pod spec is at `path`, as its kind and name
/// (`Deployment web`), for warnings and errors.
pub(super) fn describe(doc: &Yaml, path: &[Step]) -> String {
    let mut object = doc;
    // The object is where its path runs into the pod spec's keys, after the
    // last index (an item of a `List`).
    let to_object = path
        .iter()
        .rposition(|step| matches!(step, Step::Index(_)))
        .map_or(0, |index| index + 1);
    for step in &path[..to_object] {
        let next = match (step, object) {
            (Step::Key(key), node) => get(node, key),
            (Step::Index(index), Yaml::Sequence(items)) => items.get(*index),
            _ => None,
        };
        match next {
            Some(next) => object = next,
            None => break,
        }
    }
    let kind = get(object, "kind").and_then(as_str).unwrap_or("object");
    match get(object, "metadata")
        .and_then(|metadata| get(metadata, "name"))
        .and_then(as_str)
    {
        Some(name) => format!("{kind} {name}"),
        None => kind.to_owned(),
    }
}
