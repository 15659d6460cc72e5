//! `loopscope acl`: anti-spoofing ingress filters (martian and loopback sources, loopback
//! destinations off `lo`, optional bogons) for nftables, iptables, Cisco IOS or Junos.

use std::io::Write;

use anyhow::Context as _;
use loopscope_capture::acl::{AclFormat, AclOptions, Conflict, generate, parse_bogons};
use loopscope_report::{Outcome, read_bounded_text};
use serde::Serialize;

use crate::Context;

/// The largest bogon list read (full-bogon lists are a few hundred kilobytes).
const MAX_BOGONS_BYTES: u64 = 16 << 20;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "For nftables and iptables (filters loaded on this host), a prefix that holds an \
address or a gateway of this host (of the --interface, when given) is left out with a warning: \
dropping it would cut the host off from its own subnet. --keep-conflicting keeps it.\n\n\
Examples:\n  loopscope acl --format nftables > antispoof.nft && nft -c -f antispoof.nft\n  \
loopscope acl --format cisco-ios --interface GigabitEthernet0/1 --bogons bogons.txt"
)]
pub struct Args {
    /// nftables, iptables (a shell script of iptables/ip6tables commands), cisco-ios or junos.
    #[arg(long, short = 'f', value_parser = ["nftables", "iptables", "cisco-ios", "junos"])]
    pub format: String,
    /// Filter only what arrives on this interface (default: every interface but lo).
    #[arg(long, short = 'i')]
    pub interface: Option<String>,
    /// Also drop these source prefixes: one per line, `#` comments (e.g. a bogon list).
    #[arg(long, value_name = "FILE")]
    pub bogons: Option<std::path::PathBuf>,
    /// Name of the table, chain, ACL or filter.
    #[arg(long, default_value = "loopscope_antispoof")]
    pub name: String,
    /// Keep prefixes that hold an address or gateway of this host (they are warned about).
    #[arg(long)]
    pub keep_conflicting: bool,
}

#[derive(Serialize)]
struct AclRecord<'a> {
    format: &'a str,
    prefixes: Vec<String>,
    text: String,
    /// Prefixes that hold an address of this host: left out, or kept on request.
    conflicts: Vec<Conflict>,
}

impl loopscope_report::Record for AclRecord<'_> {
    fn kind(&self) -> &'static str {
        "summary"
    }
    fn write_human(&self, out: &mut dyn Write) -> std::io::Result<()> {
        out.write_all(self.text.as_bytes())
    }
}

pub fn run(args: Args, context: &Context) -> anyhow::Result<Outcome> {
    let format = AclFormat::parse(&args.format)
        .ok_or_else(|| anyhow::anyhow!("unknown --format '{}'", args.format))?;
    let bogons = match &args.bogons {
        Some(path) => {
            let text = read_bounded_text(path, MAX_BOGONS_BYTES)?;
            parse_bogons(&text).with_context(|| format!("bogons file {}", path.display()))?
        }
        None => Vec::new(),
    };
    // Filters for this host are checked against its addresses; a router's are not.
    let host = if format.is_linux() {
        loopscope_capture::kernel_routes::host_addresses().unwrap_or_else(|error| {
            loopscope_report::text::warn(&format!(
                "cannot read this host's addresses ({error}); prefixes not checked against them"
            ));
            Vec::new()
        })
    } else {
        Vec::new()
    };
    let options = AclOptions {
        interface: args.interface.clone(),
        bogons,
        name: args.name.clone(),
        host,
        keep_conflicting: args.keep_conflicting,
    };
    let acl = generate(format, &options)?;
    for conflict in &acl.conflicts {
        let role = match conflict.role {
            loopscope_capture::acl::HostRole::Address => "address",
            loopscope_capture::acl::HostRole::Gateway => "gateway",
        };
        let action = if conflict.kept {
            "kept (--keep-conflicting): this filter drops traffic from it"
        } else {
            "left out (--keep-conflicting keeps it)"
        };
        loopscope_report::text::warn(&format!(
            "{} ({}) holds this host's {role} {} on {}: {action}",
            conflict.prefix, conflict.why, conflict.address, conflict.interface
        ));
    }
    let record = AclRecord {
        format: &args.format,
        prefixes: acl.prefixes.iter().map(|entry| entry.cidr()).collect(),
        text: acl.text,
        conflicts: acl.conflicts,
    };
    let mut printer = loopscope_report::Printer::stdout(context.format);
    printer.emit(&record).context("writing to stdout")?;
    Ok(Outcome::Passed)
}
