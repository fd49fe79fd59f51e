use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

#[test]
fn an_ipv4_header_is_the_specifications_bytes() {
    let bytes = encode(addr("127.0.0.1:1234"), addr("127.0.0.2:80"), None);
    let mut want = SIGNATURE.to_vec();
    want.extend_from_slice(&[0x21, 0x11, 0x00, 0x0c]);
    want.extend_from_slice(&[127, 0, 0, 1, 127, 0, 0, 2, 0x04, 0xd2, 0x00, 0x50]);
    assert_eq!(bytes, want);
    let (header, used) = parse(&bytes).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(
        header.addresses,
        Some((addr("127.0.0.1:1234"), addr("127.0.0.2:80")))
    );
    assert_eq!(header.hand_off, None);
}

#[test]
fn hand_off_facts_and_ipv6_round_trip() {
    let facts = HandOff {
        for_pod: "redis-0".to_string(),
        hops: 1,
        listener: 1,
        hold: Duration::from_millis(12_345),
        epoch: u64::MAX - 1,
    };
    for (client, to) in [
        ("198.18.0.5:40000", "198.18.0.6:6379"),
        ("[2001:db8::1]:40000", "[2001:db8::2]:6379"),
    ] {
        let bytes = encode(addr(client), addr(to), Some(&facts));
        let (header, used) = parse(&bytes).unwrap().unwrap();
        assert_eq!(used, bytes.len());
        assert_eq!(header.addresses, Some((addr(client), addr(to))));
        assert_eq!(header.hand_off.as_ref(), Some(&facts));
    }
    // Mixed families travel as IPv6 and come back as they were.
    let bytes = encode(addr("198.18.0.5:1"), addr("[2001:db8::2]:2"), None);
    assert_eq!(bytes[13], 0x21);
    let (header, _) = parse(&bytes).unwrap().unwrap();
    assert_eq!(
        header.addresses,
        Some((addr("198.18.0.5:1"), addr("[2001:db8::2]:2")))
    );
}

#[test]
fn a_header_arriving_in_pieces_is_waited_for_and_what_follows_is_left() {
    let mut bytes = encode(addr("198.18.0.5:40000"), addr("198.18.0.6:6379"), None);
    let header_len = bytes.len();
    bytes.extend_from_slice(b"*1\r\n$4\r\nPING\r\n");
    for cut in 0..header_len {
        assert_eq!(parse(&bytes[..cut]), Ok(None), "cut at {cut}");
    }
    let (_, used) = parse(&bytes).unwrap().unwrap();
    assert_eq!(&bytes[used..], b"*1\r\n$4\r\nPING\r\n");
}

#[test]
fn anything_else_is_refused_with_its_reason() {
    assert_eq!(parse(b"*1\r\n$4\r\nPING\r\n"), Err(HeaderError::Signature));
    assert!(!may_start(b"PROXY TCP4 "));
    assert!(may_start(b"\r\n\r\n"));
    let good = encode(addr("198.18.0.5:1"), addr("198.18.0.6:2"), None);

    let mut version1 = good.clone();
    version1[12] = 0x11;
    assert_eq!(parse(&version1), Err(HeaderError::Version(0x11)));

    let mut huge = good.clone();
    huge[14..16].copy_from_slice(&u16::MAX.to_be_bytes());
    assert!(matches!(parse(&huge), Err(HeaderError::TooLong(_))));

    let mut short = good.clone();
    short[14..16].copy_from_slice(&4u16.to_be_bytes());
    short.truncate(20);
    assert!(matches!(parse(&short), Err(HeaderError::Malformed(_))));

    // A TLV that claims more than the header holds.
    let mut tlv = good.clone();
    tlv.extend_from_slice(&[HAND_OFF, 0x00, 0x40, 1]);
    let len = (tlv.len() - 16) as u16;
    tlv[14..16].copy_from_slice(&len.to_be_bytes());
    assert!(matches!(parse(&tlv), Err(HeaderError::Malformed(_))));
}

#[test]
fn a_local_header_has_no_addresses_and_unknown_tlvs_are_skipped() {
    let mut bytes = encode(addr("198.18.0.5:1"), addr("198.18.0.6:2"), None);
    bytes[12] = 0x20; // LOCAL: a health check from a balancer
    bytes.extend_from_slice(&[0x04, 0x00, 0x02, 0xab, 0xcd]); // PP2_TYPE_NOOP
    let len = (bytes.len() - 16) as u16;
    bytes[14..16].copy_from_slice(&len.to_be_bytes());
    let (header, used) = parse(&bytes).unwrap().unwrap();
    assert_eq!(used, bytes.len());
    assert_eq!(header.addresses, None);
    assert_eq!(header.hand_off, None);
}
