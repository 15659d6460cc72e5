//! Martian packets in pcap/pcapng, live AF_PACKET and flow exports; uRPF; anti-spoofing ACLs.
