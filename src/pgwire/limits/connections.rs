//! The cap on Postgres connections: past it a new client is told "too many clients"
//! (SQLSTATE 53300) the way PostgreSQL tells it, and the clients already in are not
//! slowed down.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Protocol codes of the packets a connection may open with (PostgreSQL's protocol docs).
const CANCEL_REQUEST: u32 = 80877102;
const SSL_REQUEST: u32 = 80877103;
const GSSENC_REQUEST: u32 = 80877104;

/// How long a refused client has to send its startup packet before it is cut off.
const REFUSAL_TIMEOUT: Duration = Duration::from_secs(10);

/// Startup packets are small; anything longer is not one.
const MAX_STARTUP_PACKET: usize = 10_000;

/// The connections being served, at most `max` of them.
#[derive(Clone)]
pub struct ConnectionSlots {
    free: Arc<Semaphore>,
}

/// What a new connection gets.
pub enum Admission {
    /// A slot, held until the connection ends.
    Served(OwnedSemaphorePermit),
    /// No slot, but the connection only carries a cancel request, which must get
    /// through when the server is full: cancelling is how a client frees a slot.
    CancelRequest,
    /// No slot.
    Refused,
}

impl ConnectionSlots {
    pub fn new(max: usize) -> ConnectionSlots {
        ConnectionSlots { free: Arc::new(Semaphore::new(max)) }
    }

    pub async fn admit(&self, socket: &TcpStream) -> Admission {
        match self.free.clone().try_acquire_owned() {
            Ok(slot) => Admission::Served(slot),
            Err(_) if opens_with_cancel_request(socket).await => Admission::CancelRequest,
            Err(_) => Admission::Refused,
        }
    }
}

/// Peeks (does not consume) the first packet's length and code.
async fn opens_with_cancel_request(socket: &TcpStream) -> bool {
    let peek = async {
        let mut header = [0u8; 8];
        loop {
            let read = socket.peek(&mut header).await?;
            if read == 0 {
                return Ok::<_, std::io::Error>(false);
            }
            if read == header.len() {
                let length = u32::from_be_bytes(header[..4].try_into().unwrap());
                let code = u32::from_be_bytes(header[4..].try_into().unwrap());
                return Ok(length == 16 && code == CANCEL_REQUEST);
            }
            // A partial header: wait for the rest.
            socket.readable().await?;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    matches!(tokio::time::timeout(REFUSAL_TIMEOUT, peek).await, Ok(Ok(true)))
}

/// Answers the client's startup as PostgreSQL does when full: declines SSL or GSS
/// encryption if asked, reads the startup packet, sends a FATAL 53300 and closes.
pub async fn refuse(mut socket: TcpStream) {
    let answer = async {
        loop {
            let length = socket.read_u32().await? as usize;
            if !(8..=MAX_STARTUP_PACKET).contains(&length) {
                break;
            }
            let code = socket.read_u32().await?;
            let mut rest = vec![0u8; length - 8];
            socket.read_exact(&mut rest).await?;
            if code == SSL_REQUEST || code == GSSENC_REQUEST {
                socket.write_all(b"N").await?;
                continue;
            }
            break;
        }
        socket.write_all(&too_many_clients()).await?;
        socket.shutdown().await
    };
    if let Err(e) = tokio::time::timeout(REFUSAL_TIMEOUT, answer).await.unwrap_or_else(|e| Err(e.into())) {
        tracing::debug!("refusing a connection past --max-connections: {e}");
    }
}

/// An `ErrorResponse` message: FATAL, 53300, "sorry, too many clients already".
fn too_many_clients() -> Vec<u8> {
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', "53300"),
        (b'M', "sorry, too many clients already"),
        (b'H', "the server serves at most --max-connections clients at once; try again later"),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(&fields);
    message
}

#[cfg(test)]
mod tests {
    use super::too_many_clients;

    #[test]
    fn the_refusal_is_one_well_formed_error_response() {
        let message = too_many_clients();
        assert_eq!(message[0], b'E');
        let length = u32::from_be_bytes(message[1..5].try_into().unwrap()) as usize;
        assert_eq!(length + 1, message.len());
        assert_eq!(*message.last().unwrap(), 0);
        assert!(message.windows(6).any(|w| w == b"C53300"));
    }
}
