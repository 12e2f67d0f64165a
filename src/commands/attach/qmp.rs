//! The one question `attach --qmp` asks QEMU: which I/O ports its PCI
//! devices' BARs occupy (`query-pci`), so a NIC's ports get a name. Only
//! queries are sent: QMP's capability negotiation, then `query-pci`.
//! The protocol is a line of JSON each way; a crate would add more than
//! these few lines do.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

/// A PCI device's I/O BAR.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IoBar {
    /// Its first port.
    pub base: u16,
    /// How many ports.
    pub len: u16,
    /// The device: its QOM id where it has one, else its class and IDs.
    pub device: String,
}

/// Asks the QMP socket at `path` for the PCI devices' I/O BARs.
pub fn io_bars(path: &Path) -> Result<Vec<IoBar>, String> {
    let fail = |e: &dyn std::fmt::Display| format!("QMP at {}: {e}", path.display());
    let stream = UnixStream::connect(path).map_err(|e| fail(&e))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| fail(&e))?;
    let mut writer = stream.try_clone().map_err(|e| fail(&e))?;
    let mut reader = BufReader::new(stream);
    let mut answer = |command: &str| -> Result<Value, String> {
        writeln!(writer, "{}", json!({ "execute": command })).map_err(|e| fail(&e))?;
        // Skip events; the first line with "return" or "error" answers.
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).map_err(|e| fail(&e))? == 0 {
                return Err(fail(&"the socket closed"));
            }
            let v: Value = serde_json::from_str(&line).map_err(|e| fail(&e))?;
            if let Some(r) = v.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = v.get("error") {
                return Err(fail(&format!("{command}: {e}")));
            }
        }
    };
    // The greeting comes first, unasked; the negotiation's answer is
    // found past it.
    answer("qmp_capabilities")?;
    Ok(parse(&answer("query-pci")?))
}

/// The I/O BARs in a `query-pci` answer.
pub fn parse(v: &Value) -> Vec<IoBar> {
    let mut bars = Vec::new();
    let buses = v.as_array().map(Vec::as_slice).unwrap_or_default();
    for d in buses
        .iter()
        .filter_map(|b| b["devices"].as_array())
        .flatten()
    {
        let qdev = d["qdev_id"].as_str().filter(|s| !s.is_empty());
        let class = d["class_info"]["desc"].as_str().unwrap_or("PCI device");
        let ids = format!(
            "{:04x}:{:04x}",
            d["id"]["vendor"].as_u64().unwrap_or(0),
            d["id"]["device"].as_u64().unwrap_or(0)
        );
        let device = match qdev {
            Some(id) => format!("{id} ({class} {ids})"),
            None => format!("{class} {ids}"),
        };
        for r in d["regions"].as_array().into_iter().flatten() {
            let (Some(base), Some(size)) = (r["address"].as_u64(), r["size"].as_u64()) else {
                continue;
            };
            if r["type"] == "io" && base > 0 && base + size <= 0x10000 {
                bars.push(IoBar {
                    base: base as u16,
                    len: size as u16,
                    device: format!("{device} BAR{}", r["bar"].as_u64().unwrap_or(0)),
                });
            }
        }
    }
    bars
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_bars_of_a_query_pci_answer() {
        // The shape QEMU 7.2 answers with for `-device pcnet`.
        let v = json!([{
            "bus": 0,
            "devices": [
                {"bus": 0, "slot": 0, "function": 0, "qdev_id": "",
                 "class_info": {"class": 1536, "desc": "Host bridge"},
                 "id": {"vendor": 32902, "device": 4663}, "regions": []},
                {"bus": 0, "slot": 3, "function": 0, "qdev_id": "",
                 "class_info": {"class": 512, "desc": "Ethernet controller"},
                 "id": {"vendor": 4130, "device": 8192},
                 "regions": [
                    {"bar": 0, "type": "io", "address": 49152, "size": 32},
                    {"bar": 1, "type": "memory", "address": 4273987584u64, "size": 32,
                     "prefetch": false, "mem_type_64": false}
                 ]}
            ]
        }]);
        assert_eq!(
            parse(&v),
            vec![IoBar {
                base: 0xc000,
                len: 32,
                device: "Ethernet controller 1022:2000 BAR0".into()
            }]
        );
        assert!(parse(&json!({})).is_empty());
    }
}
