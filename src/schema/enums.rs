//! The wire's enums and the fallback that lets an older reader keep what a
//! newer sidecar sends.
//!
//! Each value's name on the wire is written once, in its `strum`
//! attribute; serde, [`Display`](std::fmt::Display), `as_str`, `FromStr`
//! and `ALL` are all derived from it (see [`wire_enum!`]).

use std::marker::PhantomData;

use serde::de::{self, Visitor};
use serde::{Deserialize, Serialize};
use strum::{EnumString, IntoStaticStr, VariantArray};

/// Which way a connection crosses the pod boundary.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    EnumString,
    IntoStaticStr,
    VariantArray,
)]
#[strum(serialize_all = "lowercase")]
pub enum Direction {
    /// Traffic entering the pod, towards the local application.
    Inbound,
    /// Traffic leaving the pod, from the local application to another service.
    Outbound,
}

/// The protocol of a recorded HTTP request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumString, IntoStaticStr, VariantArray)]
pub enum HttpProtocol {
    #[strum(serialize = "http/1.1")]
    Http1,
    #[strum(serialize = "h2")]
    H2,
    /// HTTP/2 with `content-type: application/grpc*`.
    #[strum(serialize = "grpc")]
    Grpc,
}

/// The protocol of a recorded opaque connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumString, IntoStaticStr, VariantArray)]
#[strum(serialize_all = "lowercase")]
pub enum TcpProtocol {
    Tcp,
    Tls,
}

/// Why a request or connection failed, as far as the proxy could tell.
#[derive(
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    EnumString,
    IntoStaticStr,
    VariantArray,
)]
#[strum(serialize_all = "snake_case")]
pub enum ErrorKind {
    /// The upstream actively refused the connection.
    ConnectRefused,
    /// The upstream did not accept the connection in time.
    ConnectTimeout,
    /// The upstream's name did not resolve.
    Dns,
    /// Connecting failed for another reason (unreachable network, …).
    ConnectError,
    /// The upstream reset or closed the connection or stream mid-exchange.
    UpstreamReset,
    /// The client reset or closed the connection or stream mid-exchange.
    DownstreamReset,
    /// A peer broke the protocol (malformed request or response).
    Protocol,
    /// The connection was neither redirected to the proxy nor an explicit
    /// proxy request, so it had nowhere to go (forwarding it would loop).
    NoDestination,
    /// Nothing moved for `--idle-timeout` (a tunnel, or a client that sent
    /// nothing) or `--body-timeout` (a body stalled mid-way), and the proxy
    /// closed the exchange.
    IdleTimeout,
    /// The sidecar stopped while the exchange was still running: it was
    /// cut off when the drain timeout ended.
    Shutdown,
}

/// Gives a wire enum its `ALL`, `as_str`, `Display`, serde and
/// [`WireName`], all from its `strum` names.
macro_rules! wire_enum {
    ($($name:ident),* $(,)?) => {$(
        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = <$name as VariantArray>::VARIANTS;

            /// The value's name on the wire.
            pub fn as_str(self) -> &'static str {
                self.into()
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(NameVisitor(PhantomData))
            }
        }

        impl WireName for $name {
            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
        }
    )*};
}

wire_enum!(Direction, HttpProtocol, TcpProtocol, ErrorKind);

/// Reads a wire enum from its name without allocating.
struct NameVisitor<T>(PhantomData<T>);

impl<T: std::str::FromStr> Visitor<'_> for NameVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a name this schema defines")
    }

    fn visit_str<E: de::Error>(self, name: &str) -> Result<T, E> {
        name.parse().map_err(|_| E::unknown_variant(name, &[]))
    }
}

/// A wire enum's value, or one this build does not know: a newer sidecar
/// may send error kinds and protocols added since (docs/events.md,
/// "Evolving the schema"). An unknown value is kept as sent, shown as
/// itself, and written back unchanged, so an older UI or replay shows what
/// a newer sidecar says instead of rejecting the whole message.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Lenient<T> {
    Known(T),
    Unknown(String),
}

/// A wire enum: each value's one name on the wire.
pub trait WireName: Copy {
    fn as_str(self) -> &'static str;
}

impl<T: WireName> Lenient<T> {
    /// The name on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Lenient::Known(value) => value.as_str(),
            Lenient::Unknown(name) => name,
        }
    }

    /// The value, when this build knows it.
    pub fn known(&self) -> Option<T> {
        match self {
            Lenient::Known(value) => Some(*value),
            Lenient::Unknown(_) => None,
        }
    }
}

impl<T> From<T> for Lenient<T> {
    fn from(value: T) -> Self {
        Lenient::Known(value)
    }
}

impl<T: PartialEq> PartialEq<T> for Lenient<T> {
    fn eq(&self, other: &T) -> bool {
        matches!(self, Lenient::Known(value) if value == other)
    }
}

impl<T: WireName> std::fmt::Display for Lenient<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl<T: WireName> Serialize for Lenient<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de, T: serde::de::DeserializeOwned> Deserialize<'de> for Lenient<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        let known = T::deserialize(
            serde::de::value::StrDeserializer::<serde::de::value::Error>::new(&name),
        );
        Ok(match known {
            Ok(value) => Lenient::Known(value),
            Err(_) => Lenient::Unknown(name),
        })
    }
}
