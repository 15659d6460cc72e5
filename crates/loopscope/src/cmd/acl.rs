//! `loopscope acl`: anti-spoofing ingress filters (martian and loopback sources, loopback
//! destinations off `lo`, optional bogons) for nftables, iptables, Cisco IOS or Junos.

use std::io::Write;

use anyhow::Context as _;
use loopscope_capture::acl::{AclFormat, AclOptions, generate, parse_bogons};
use loopscope_report::Outcome;
use serde::Serialize;

use crate::Context;

#[derive(clap::Args, Debug)]
#[command(
    after_help = "Examples:\n  loopscope acl --format nftables > antispoof.nft && nft -c -f antispoof.nft\n  \
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
}

#[derive(Serialize)]
struct AclRecord<'a> {
    format: &'a str,
    prefixes: Vec<String>,
    text: String,
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
    if args.name.is_empty()
        || !args
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        anyhow::bail!("--name must be letters, digits, '_' or '-'");
    }
    if let Some(interface) = &args.interface
        && (interface.is_empty() || interface.contains(['"', '\'', ' ', '\n', ';']))
    {
        anyhow::bail!("--interface '{interface}' is not an interface name");
    }
    let bogons = match &args.bogons {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?;
            parse_bogons(&text).with_context(|| format!("bogons file {}", path.display()))?
        }
        None => Vec::new(),
    };
    let options = AclOptions {
        interface: args.interface.clone(),
        bogons,
        name: args.name.clone(),
    };
    let text = generate(format, &options);
    let mut prefixes: Vec<String> = loopscope_capture::acl::martian_source_prefixes()
        .iter()
        .map(|prefix| prefix.cidr())
        .collect();
    prefixes.extend(options.bogons.iter().map(|prefix| prefix.cidr()));
    let record = AclRecord {
        format: &args.format,
        prefixes,
        text,
    };
    let mut printer = loopscope_report::Printer::stdout(context.format);
    printer.emit(&record).context("writing to stdout")?;
    Ok(Outcome::Passed)
}
