//! The original destination of a connection that iptables redirected to the
//! proxy (`SO_ORIGINAL_DST`, IPv4 and IPv6), via socket2: no hand-written
//! `unsafe`.

use std::net::SocketAddr;

use tokio::net::TcpStream;

/// The address the client originally dialled, or `None` when the socket
/// carries none (no conntrack entry: the connection was not redirected, or
/// not on Linux).
#[cfg(target_os = "linux")]
pub fn original_dst(stream: &TcpStream) -> Option<SocketAddr> {
    let sock = socket2::SockRef::from(stream);
    let local = stream.local_addr().ok()?;
    let addr = match local {
        SocketAddr::V4(_) => sock.original_dst_v4(),
        SocketAddr::V6(v6) if v6.ip().to_ipv4_mapped().is_some() => sock.original_dst_v4(),
        SocketAddr::V6(_) => sock.original_dst_v6(),
    };
    addr.ok()?.as_socket()
}

#[cfg(not(target_os = "linux"))]
pub fn original_dst(_stream: &TcpStream) -> Option<SocketAddr> {
    None
}
