//! A request's route: what it asked for, without what varies per call.
//!
//! A gRPC request's route is its path, `/service/method`. An HTTP request's
//! is its method and path without the query, with every segment that looks
//! like an identifier replaced by `{id}`: all digits, a UUID, a long hex
//! string, or a long token of letters and digits (base64 and the like), so
//! that `/users/42` and `/users/43` are one route, `GET /users/{id}`. The
//! filter's `route` field and the per-route figures use this one definition.

/// The route of a request (see the module documentation). `method` is `-`
/// when unknown; a request without a path (CONNECT) is its method alone.
pub fn route(grpc: bool, method: Option<&str>, path: Option<&str>) -> String {
    let mut route = String::new();
    route_into(&mut route, grpc, method, path);
    route
}

/// [`route`], appended to `out` (so that a caller reusing one buffer
/// allocates nothing per request).
pub fn route_into(out: &mut String, grpc: bool, method: Option<&str>, path: Option<&str>) {
    let method = method.unwrap_or("-");
    let Some(path) = path else {
        out.push_str(method);
        return;
    };
    let end = path
        .bytes()
        .position(|b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    let path = &path[..end];
    if grpc {
        out.push_str(path);
        return;
    }
    out.reserve(method.len() + 1 + path.len());
    out.push_str(method);
    out.push(' ');
    for (index, segment) in path.split('/').enumerate() {
        if index > 0 {
            out.push('/');
        }
        out.push_str(if is_id(segment) { "{id}" } else { segment });
    }
}

/// Whether a path segment looks like an identifier rather than a name.
fn is_id(segment: &str) -> bool {
    let bytes = segment.as_bytes();
    if bytes.is_empty() {
        return false;
    }
    let digits = bytes.iter().filter(|b| b.is_ascii_digit()).count();
    if digits == bytes.len() {
        return true;
    }
    // Every other kind is 16 characters or more: most segments are names
    // shorter than that, and end here.
    if bytes.len() < 16 {
        return false;
    }
    if is_uuid(bytes) {
        return true;
    }
    // Long hex (object ids, hashes): at least 16 characters, some digits.
    if bytes.len() >= 16 && digits > 0 && bytes.iter().all(u8::is_ascii_hexdigit) {
        return true;
    }
    // Tokens (base64, base64url, random ids): at least 20 characters of
    // letters, digits and `-_=+`, with digits among letters of both cases,
    // or many digits; words joined by `-` or `_` are neither.
    let upper = bytes.iter().any(u8::is_ascii_uppercase);
    let lower = bytes.iter().any(u8::is_ascii_lowercase);
    bytes.len() >= 20
        && digits > 0
        && ((upper && lower) || digits >= 4)
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || b"-_=+".contains(b))
}

/// `8-4-4-4-12` hex digits.
fn is_uuid(bytes: &[u8]) -> bool {
    bytes.len() == 36
        && bytes.iter().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => *b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers_in_http_paths_become_one_route() {
        let cases = [
            ("/users/42", "GET /users/{id}"),
            ("/users/42/orders/7?page=2", "GET /users/{id}/orders/{id}"),
            ("/objects/5f1e2d3c4b5a69788796a5b4", "GET /objects/{id}"),
            (
                "/sessions/123e4567-e89b-12d3-a456-426614174000",
                "GET /sessions/{id}",
            ),
            ("/t/dGhpcyBpcyBhIHRva2VuIDEyMzQ1", "GET /t/{id}"),
            // Names stay.
            ("/api/vote", "GET /api/vote"),
            (
                "/api/list-all-the-emoji-in-the-shop",
                "GET /api/list-all-the-emoji-in-the-shop",
            ),
            ("/v1/beef", "GET /v1/beef"),
            (
                "/docs/Getting-Started-With-Meshtop",
                "GET /docs/Getting-Started-With-Meshtop",
            ),
            ("/", "GET /"),
        ];
        for (path, expected) in cases {
            assert_eq!(route(false, Some("GET"), Some(path)), expected, "{path}");
        }
    }

    #[test]
    fn grpc_routes_are_service_and_method() {
        assert_eq!(
            route(
                true,
                Some("POST"),
                Some("/emojivoto.v1.VotingService/VoteDoughnut")
            ),
            "/emojivoto.v1.VotingService/VoteDoughnut"
        );
    }

    #[test]
    fn requests_without_a_path_or_a_method() {
        assert_eq!(route(false, Some("CONNECT"), None), "CONNECT");
        assert_eq!(route(false, None, None), "-");
        assert_eq!(route(false, None, Some("/a")), "- /a");
    }
}
