//! Listening sockets and their exposure (sock_diag, /proc), port owners.
