//! One query in, one decision out: a local answer from the zone, or the
//! parsed query to forward. Wire format through hickory-proto only.

use std::net::IpAddr;

use hickory_proto::{
    op::{Edns, Header, Message, MessageType, OpCode, ResponseCode},
    rr::{
        rdata::{A, AAAA, PTR},
        DNSClass, Name, RData, Record, RecordType,
    },
    serialize::binary::{BinDecodable, BinDecoder},
};

use super::zone::{Answer, Zone, LOCAL_TTL};

/// EDNS payload size the resolver advertises.
pub const EDNS_PAYLOAD: u16 = 4096;

/// What to do with a received message.
#[derive(Debug)]
pub enum Handled {
    /// Send this reply.
    Reply(Vec<u8>),
    /// Not a local name: forward this query upstream.
    Forward(Box<Message>),
    /// Not worth an answer (a response, or not even a DNS header).
    Drop,
}

/// Decide about `raw` from the container `asker`. Over UDP (`udp`) a
/// local reply larger than the client accepts is truncated (TC).
pub fn handle(zone: &Zone, asker: &str, raw: &[u8], udp: bool) -> Handled {
    let Ok(query) = Message::from_vec(raw) else {
        return malformed(raw);
    };
    if query.metadata.message_type != MessageType::Query {
        return Handled::Drop;
    }
    if query.metadata.op_code != OpCode::Query {
        return reply(&error(&query, ResponseCode::NotImp));
    }
    let [q] = query.queries.as_slice() else {
        return reply(&error(&query, ResponseCode::FormErr));
    };
    if q.query_class() != DNSClass::IN {
        return Handled::Forward(Box::new(query));
    }
    let qname = q.name().to_ascii();
    let answers = match q.query_type() {
        RecordType::PTR => match ptr_answer(zone, asker, q.name()) {
            Some(r) => vec![r],
            None => return Handled::Forward(Box::new(query)),
        },
        qtype => match zone.lookup(asker, &qname) {
            Answer::NotLocal => return Handled::Forward(Box::new(query)),
            // AAAA: the IPv6 addresses of those that have one (none: NODATA).
            Answer::Local(ips) if qtype == RecordType::AAAA => ips
                .into_iter()
                .filter_map(|ip| zone.ip6_of(ip))
                .map(|ip| Record::from_rdata(q.name().clone(), LOCAL_TTL, RData::AAAA(AAAA(ip))))
                .collect(),
            // A known name without data of this type (MX, ...): NODATA.
            Answer::Local(_) if qtype != RecordType::A => vec![],
            Answer::Local(ips) => ips
                .into_iter()
                .map(|ip| Record::from_rdata(q.name().clone(), LOCAL_TTL, RData::A(A(ip))))
                .collect(),
        },
    };
    let mut resp = response(&query, ResponseCode::NoError);
    resp.add_answers(answers);
    match reply(&resp) {
        Handled::Reply(v) if udp => Handled::Reply(fit_udp(v, udp_limit(&query))),
        other => other,
    }
}

fn ptr_answer(zone: &Zone, asker: &str, name: &Name) -> Option<Record> {
    let net = name.parse_arpa_name().ok()?;
    let target = match (net.addr(), net.prefix_len()) {
        (IpAddr::V4(ip), 32) => zone.reverse(asker, ip)?,
        (IpAddr::V6(ip), 128) => zone.reverse6(asker, ip)?,
        _ => return None,
    };
    let target = Name::from_ascii(format!("{target}.")).ok()?;
    Some(Record::from_rdata(
        name.clone(),
        LOCAL_TTL,
        RData::PTR(PTR(target)),
    ))
}

/// A response skeleton for `query`: same id, opcode, question, RD; RA set;
/// EDNS when the query had it.
fn response(query: &Message, code: ResponseCode) -> Message {
    let mut m = Message::response(query.metadata.id, query.metadata.op_code);
    m.metadata.recursion_desired = query.metadata.recursion_desired;
    m.metadata.recursion_available = true;
    m.metadata.checking_disabled = query.metadata.checking_disabled;
    m.metadata.response_code = code;
    m.add_queries(query.queries.iter().cloned());
    if query.edns.is_some() {
        let mut e = Edns::new();
        e.set_max_payload(EDNS_PAYLOAD);
        m.set_edns(e);
    }
    m
}

fn error(query: &Message, code: ResponseCode) -> Message {
    response(query, code)
}

fn reply(m: &Message) -> Handled {
    match m.to_vec() {
        Ok(v) => Handled::Reply(v),
        Err(e) => {
            tracing::debug!("dns: cannot encode a reply: {e}");
            Handled::Drop
        }
    }
}

/// FORMERR for a query whose header parses but whose body does not.
fn malformed(raw: &[u8]) -> Handled {
    let Ok(h) = Header::read(&mut BinDecoder::new(raw)) else {
        return Handled::Drop;
    };
    if h.metadata.message_type != MessageType::Query {
        return Handled::Drop;
    }
    let mut m = Message::error_msg(h.metadata.id, h.metadata.op_code, ResponseCode::FormErr);
    m.metadata.recursion_desired = h.metadata.recursion_desired;
    reply(&m)
}

/// SERVFAIL for a query no upstream answered.
pub fn servfail(query: &Message) -> Vec<u8> {
    match reply(&error(query, ResponseCode::ServFail)) {
        Handled::Reply(v) => v,
        _ => Vec::new(),
    }
}

/// The largest UDP reply the client of `query` accepts (512 without EDNS).
pub fn udp_limit(query: &Message) -> usize {
    usize::from(query.max_payload())
}

/// Make `reply` fit `limit` bytes for UDP: if it is larger, send the header
/// and question only, with TC set, so the client retries over TCP.
pub fn fit_udp(reply: Vec<u8>, limit: usize) -> Vec<u8> {
    if reply.len() <= limit {
        return reply;
    }
    match Message::from_vec(&reply).map(|m| m.truncate().to_vec()) {
        Ok(Ok(v)) => v,
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use hickory_proto::op::Query;

    use super::*;
    use crate::dns::zone::{ZoneContainer, ZoneEndpoint};

    fn zone() -> Zone {
        let mut cs = vec![ZoneContainer {
            name: "client".into(),
            id: "c".repeat(64),
            endpoints: vec![ZoneEndpoint {
                network: "net".into(),
                ip: Ipv4Addr::new(10, 9, 0, 2),
                aliases: vec![],
                ip6: None,
            }],
            links: vec![],
        }];
        for i in 0..40u8 {
            cs.push(ZoneContainer {
                name: format!("w{i}"),
                id: format!("{i:012}"),
                endpoints: vec![ZoneEndpoint {
                    network: "net".into(),
                    ip: Ipv4Addr::new(10, 9, 1, i),
                    aliases: vec!["big".into()],
                    ip6: None,
                }],
                links: vec![],
            });
        }
        Zone::new(&cs)
    }

    fn ask(name: &str, t: RecordType, edns: bool) -> Message {
        let mut m = Message::query();
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), t));
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(1232);
            m.set_edns(e);
        }
        m
    }

    fn run(m: &Message) -> Handled {
        handle(&zone(), "client", &m.to_vec().unwrap(), false)
    }

    fn reply_of(h: Handled) -> Message {
        match h {
            Handled::Reply(v) => Message::from_vec(&v).unwrap(),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn a_record_keeps_id_question_case_and_ttl() {
        let q = ask("W1.", RecordType::A, false);
        let r = reply_of(run(&q));
        assert_eq!(r.metadata.id, q.metadata.id);
        assert_eq!(r.metadata.message_type, MessageType::Response);
        assert!(r.metadata.recursion_desired && r.metadata.recursion_available);
        assert_eq!(r.queries, q.queries);
        assert_eq!(r.answers.len(), 1);
        assert_eq!(r.answers[0].ttl, LOCAL_TTL);
        assert_eq!(r.answers[0].name.to_ascii(), "W1.");
        assert_eq!(r.answers[0].data, RData::A(A(Ipv4Addr::new(10, 9, 1, 1))));
    }

    #[test]
    fn aaaa_and_mx_of_a_known_name_are_empty_noerror() {
        for t in [RecordType::AAAA, RecordType::MX] {
            let r = reply_of(run(&ask("w1.", t, false)));
            assert_eq!(r.metadata.response_code, ResponseCode::NoError);
            assert!(r.answers.is_empty());
        }
    }

    #[test]
    fn unknown_names_and_other_classes_are_forwarded() {
        assert!(matches!(
            run(&ask("example.com.", RecordType::A, false)),
            Handled::Forward(_)
        ));
        assert!(matches!(
            run(&ask("nope.", RecordType::AAAA, false)),
            Handled::Forward(_)
        ));
        let mut q = ask("w1.", RecordType::A, false);
        q.queries[0].set_query_class(DNSClass::CH);
        assert!(matches!(run(&q), Handled::Forward(_)));
        // PTR for an address the zone does not hold.
        assert!(matches!(
            run(&ask("1.1.1.1.in-addr.arpa.", RecordType::PTR, false)),
            Handled::Forward(_)
        ));
    }

    #[test]
    fn ptr_answers_name_dot_network() {
        let r = reply_of(run(&ask("3.1.9.10.in-addr.arpa.", RecordType::PTR, false)));
        assert_eq!(r.answers.len(), 1);
        assert_eq!(
            r.answers[0].data,
            RData::PTR(PTR(Name::from_ascii("w3.net.").unwrap()))
        );
    }

    #[test]
    fn ptr_and_a_work_for_compose_style_names_with_underscores() {
        let z = Zone::new(&[ZoneContainer {
            name: "proj_web_1".into(),
            id: "a".repeat(64),
            endpoints: vec![ZoneEndpoint {
                network: "proj_default".into(),
                ip: Ipv4Addr::new(10, 7, 0, 2),
                aliases: vec![],
                ip6: None,
            }],
            links: vec![],
        }]);
        let q = ask("2.0.7.10.in-addr.arpa.", RecordType::PTR, false);
        let r = reply_of(handle(&z, "proj_web_1", &q.to_vec().unwrap(), true));
        assert_eq!(
            r.answers[0].data,
            RData::PTR(PTR(Name::from_ascii("proj_web_1.proj_default.").unwrap()))
        );
        let q = ask("proj_web_1.proj_default.", RecordType::A, false);
        let r = reply_of(handle(&z, "proj_web_1", &q.to_vec().unwrap(), true));
        assert_eq!(r.answers.len(), 1);
    }

    #[test]
    fn big_answer_is_truncated_to_512_without_edns_and_fits_with_edns() {
        let q = ask("big.", RecordType::A, false);
        let Handled::Reply(v) = run(&q) else { panic!() };
        assert!(v.len() > 512);
        let t = Message::from_vec(&fit_udp(v, udp_limit(&q))).unwrap();
        assert!(t.metadata.truncation);
        let Handled::Reply(v) = handle(&zone(), "client", &q.to_vec().unwrap(), true) else {
            panic!()
        };
        assert!(v.len() <= 512);
        assert_eq!(Message::from_vec(&v).unwrap(), t);
        assert!(t.answers.is_empty());
        assert_eq!(t.queries, q.queries);
        assert_eq!(t.metadata.id, q.metadata.id);

        let q = ask("big.", RecordType::A, true);
        let Handled::Reply(v) = run(&q) else { panic!() };
        let r = Message::from_vec(&fit_udp(v, udp_limit(&q))).unwrap();
        assert!(!r.metadata.truncation);
        assert_eq!(r.answers.len(), 40);
        assert_eq!(
            r.edns.as_ref().map(hickory_proto::op::Edns::max_payload),
            Some(EDNS_PAYLOAD)
        );
    }

    #[test]
    fn malformed_query_gets_formerr_and_garbage_or_responses_nothing() {
        let q = ask("w1.", RecordType::A, false);
        let mut v = q.to_vec().unwrap();
        v.truncate(v.len() - 3);
        let r = reply_of(handle(&zone(), "client", &v, true));
        assert_eq!(r.metadata.response_code, ResponseCode::FormErr);
        assert_eq!(r.metadata.id, q.metadata.id);
        assert!(matches!(
            handle(&zone(), "client", &[1, 2, 3], true),
            Handled::Drop
        ));
        let mut resp = q.clone();
        resp.metadata.message_type = MessageType::Response;
        assert!(matches!(run(&resp), Handled::Drop));
    }

    #[test]
    fn notify_opcode_is_not_implemented_and_two_questions_are_formerr() {
        let mut q = ask("w1.", RecordType::A, false);
        q.metadata.op_code = OpCode::Notify;
        assert_eq!(
            reply_of(run(&q)).metadata.response_code,
            ResponseCode::NotImp
        );
        let mut q = ask("w1.", RecordType::A, false);
        q.add_query(Query::query(
            Name::from_ascii("w2.").unwrap(),
            RecordType::A,
        ));
        assert_eq!(
            reply_of(run(&q)).metadata.response_code,
            ResponseCode::FormErr
        );
    }

    #[test]
    fn servfail_keeps_the_id_and_question() {
        let q = ask("example.com.", RecordType::A, false);
        let r = Message::from_vec(&servfail(&q)).unwrap();
        assert_eq!(r.metadata.response_code, ResponseCode::ServFail);
        assert_eq!(r.metadata.id, q.metadata.id);
        assert_eq!(r.queries, q.queries);
    }
}
