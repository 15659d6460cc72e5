//! Race-free loopback addresses and bound sockets for test suites.
