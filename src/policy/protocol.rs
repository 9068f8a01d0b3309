//! IP protocols: the one table of names and numbers. Policy rules name a protocol as Felix
//! reads it (`felix/rules` and `match.go` matchL4Protocol: TCP, UDP, ICMP, ICMPv6, SCTP,
//! UDPLite, case-insensitive, or a number 1–255); Kubernetes objects (container ports,
//! NetworkPolicy ports, EndpointSlice ports) name TCP, UDP or SCTP exactly, TCP when absent.
//! Everything past parsing carries the number, as the wire does.

/// TCP.
pub const TCP: u8 = 6;
/// UDP.
pub const UDP: u8 = 17;
/// SCTP.
pub const SCTP: u8 = 132;

/// Felix's protocol names and their numbers.
const NAMES: [(&str, u8); 6] = [
    ("TCP", TCP),
    ("UDP", UDP),
    ("ICMP", 1),
    ("ICMPv6", 58),
    ("SCTP", SCTP),
    ("UDPLite", 136),
];

/// The names [`by_name`] accepts, for error messages.
pub const NAMES_TEXT: &str = "TCP, UDP, ICMP, ICMPv6, SCTP, UDPLite or 1–255";

/// The number of a protocol named as in a Calico rule (case-insensitive).
pub fn by_name(name: &str) -> Option<u8> {
    NAMES
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|&(_, number)| number)
}

/// The name of a protocol number as Calico writes it (`None` for a number without one).
pub fn name(number: u8) -> Option<&'static str> {
    NAMES
        .iter()
        .find(|&&(_, n)| n == number)
        .map(|&(name, _)| name)
}

/// A Kubernetes port's protocol (`TCP`, `UDP` or `SCTP`, exactly; `TCP` when absent), as a
/// number; the name back when it is not one of those.
pub fn kubernetes(protocol: Option<&str>) -> Result<u8, &str> {
    match protocol.unwrap_or("TCP") {
        "TCP" => Ok(TCP),
        "UDP" => Ok(UDP),
        "SCTP" => Ok(SCTP),
        other => Err(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_numbers_agree_both_ways() {
        for (n, number) in NAMES {
            assert_eq!(by_name(n), Some(number));
            assert_eq!(by_name(&n.to_ascii_lowercase()), Some(number));
            assert_eq!(name(number), Some(n));
        }
        assert_eq!(by_name("tcp6"), None);
        assert_eq!(name(250), None);
    }

    #[test]
    fn kubernetes_names_are_exact_and_default_to_tcp() {
        assert_eq!(kubernetes(None), Ok(TCP));
        assert_eq!(kubernetes(Some("SCTP")), Ok(SCTP));
        assert_eq!(kubernetes(Some("udp")), Err("udp"));
        assert_eq!(kubernetes(Some("ICMP")), Err("ICMP"));
    }
}
