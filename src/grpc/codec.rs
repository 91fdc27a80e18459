//! The SessionService's codec: tonic's prost codec, except that a message that does not decode
//! is the caller's mistake, `INVALID_ARGUMENT` (tonic's own says `INTERNAL`, which SPEC §2.2
//! forbids for bad input). `build.rs` has the generated server use it.

use tonic::Status;
use tonic::codec::{BufferSettings, DecodeBuf, Decoder};
use tonic_prost::ProstCodec;

pub struct Codec<T, U>(ProstCodec<T, U>);

impl<T, U> Default for Codec<T, U> {
    fn default() -> Self {
        Codec(ProstCodec::default())
    }
}

impl<T, U> tonic::codec::Codec for Codec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = <ProstCodec<T, U> as tonic::codec::Codec>::Encoder;
    type Decoder = Refusing<<ProstCodec<T, U> as tonic::codec::Codec>::Decoder>;

    fn encoder(&mut self) -> Self::Encoder {
        self.0.encoder()
    }

    fn decoder(&mut self) -> Self::Decoder {
        Refusing(self.0.decoder())
    }
}

/// A decoder whose failures are `INVALID_ARGUMENT`.
pub struct Refusing<D>(D);

impl<D: Decoder<Error = Status>> Decoder for Refusing<D> {
    type Item = D::Item;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<Self::Item>, Status> {
        self.0
            .decode(buf)
            .map_err(|e| Status::invalid_argument(format!("the message cannot be decoded: {}", e.message())))
    }

    fn buffer_settings(&self) -> BufferSettings {
        self.0.buffer_settings()
    }
}
