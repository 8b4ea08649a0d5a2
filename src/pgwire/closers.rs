//! Closing a connection from outside pgwire's loop: a COPY (SUBSCRIBE) client that
//! stops reading leaves its socket's buffers full, and pgwire waits on the write for
//! ever; shutting the socket down makes that write fail and ends the connection.

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr};
use std::sync::{Arc, Mutex};

use tokio::net::TcpStream;

/// Each live connection's socket, by its peer address.
#[derive(Default)]
pub struct Closers {
    sockets: Mutex<HashMap<SocketAddr, Arc<std::net::TcpStream>>>,
}

/// Closes one connection, once.
pub struct Closer(Arc<std::net::TcpStream>);

impl Closer {
    /// Shuts the socket down both ways: pgwire's pending read or write fails.
    pub fn close(&self) {
        let _ = self.0.shutdown(Shutdown::Both);
    }
}

/// Forgets a connection's socket when the connection ends.
pub struct Registration {
    closers: Arc<Closers>,
    peer: SocketAddr,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.closers.sockets.lock().unwrap().remove(&self.peer);
    }
}

impl Closers {
    /// Keeps a second handle on `socket` (the same socket, not a copy of its data);
    /// returns the socket to serve and what forgets it when dropped.
    pub fn register(
        self: &Arc<Self>,
        socket: TcpStream,
        peer: SocketAddr,
    ) -> std::io::Result<(TcpStream, Registration)> {
        let socket = socket.into_std()?;
        let handle = socket.try_clone()?;
        self.sockets.lock().unwrap().insert(peer, Arc::new(handle));
        Ok((TcpStream::from_std(socket)?, Registration { closers: self.clone(), peer }))
    }

    /// What closes the connection from `peer`, if it is live.
    pub fn of(&self, peer: SocketAddr) -> Option<Closer> {
        self.sockets.lock().unwrap().get(&peer).cloned().map(Closer)
    }
}
