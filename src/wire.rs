//! DNS messages on their way out: the one encoding path from hickory's
//! `MessageResponse` to bytes, and the one builder of header-only answers.
//! The UDP and TCP loops, the handler and the RPZ primary all use these.

use hickory_proto::ProtoError;
use hickory_proto::op::{Header, HeaderCounts, Metadata, ResponseCode};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::server::ResponseInfo;

/// The response type that hickory's `ResponseHandler::send_response` takes,
/// spelled once for every function that passes one on:
/// `response: message_response!('_, 'a)`. The two `ResponseHandler` impls
/// (server::listen) must spell the trait's signature out themselves:
/// `async_trait` rewrites their lifetimes before macros are expanded.
macro_rules! message_response {
    ($q:lifetime, $a:lifetime) => {
        hickory_server::zone_handler::MessageResponse<
            $q,
            $a,
            impl Iterator<Item = &$a hickory_proto::rr::Record> + Send + $a,
            impl Iterator<Item = &$a hickory_proto::rr::Record> + Send + $a,
            impl Iterator<Item = &$a hickory_proto::rr::Record> + Send + $a,
            impl Iterator<Item = &$a hickory_proto::rr::Record> + Send + $a,
        >
    };
}
pub(crate) use message_response;

/// Encode a response into at most `max_size` octets. What does not fit is
/// left out and TC is set (hickory's emitter does this), so a UDP answer
/// is cut at the client's EDNS size and a stream answer at 65535.
pub fn encode<'a>(
    response: message_response!('_, 'a),
    max_size: u16,
    capacity: usize,
) -> Result<(Vec<u8>, ResponseInfo), ProtoError> {
    let mut msg = Vec::with_capacity(capacity);
    let info = {
        let mut enc = BinEncoder::new(&mut msg);
        enc.set_max_size(max_size);
        response.destructive_emit(&mut enc)?
    };
    Ok((msg, info))
}

/// The header of an answer to `request` with `rcode` and no records: the
/// request's ID, opcode and RD/CD echoed as RFC 1035 asks.
pub fn header_only(request: &Metadata, rcode: ResponseCode) -> Header {
    let mut metadata = Metadata::response_from_request(request);
    metadata.response_code = rcode;
    Header {
        metadata,
        counts: HeaderCounts::default(),
    }
}

/// What to report (logs, metrics) for an answer that is `rcode` and empty,
/// such as one that could not be sent.
pub fn header_only_info(request: &Metadata, rcode: ResponseCode) -> ResponseInfo {
    ResponseInfo::from(header_only(request, rcode))
}
