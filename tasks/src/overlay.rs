//! [`OverlayNetwork`]: flannel's network configuration, and the subnets
//! flannel would lease in it.

use std::net::Ipv4Addr;

/// flannel's network configuration (`/coreos.com/network/config`): the
/// network, the size of each node's subnet, and the range flannel leases
/// subnets from. A reservation is one flannel itself would accept.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OverlayNetwork {
    /// `Network`'s address.
    pub network: Ipv4Addr,
    /// `Network`'s prefix length.
    pub prefix: u8,
    /// `SubnetLen`.
    pub subnet_len: u8,
    /// `SubnetMin`: the first subnet leased.
    pub subnet_min: Ipv4Addr,
    /// `SubnetMax`: the last subnet leased.
    pub subnet_max: Ipv4Addr,
}

impl Default for OverlayNetwork {
    fn default() -> Self {
        OverlayNetwork::new("10.100.0.0/16", 24, None, None).expect("the default network is valid")
    }
}

impl OverlayNetwork {
    /// `network` (`a.b.c.d/n`) cut into `/subnet_len` subnets, leased from
    /// `min` to `max` (flannel's defaults: the second subnet to the last).
    pub fn new(
        network: &str,
        subnet_len: u8,
        min: Option<&str>,
        max: Option<&str>,
    ) -> Result<OverlayNetwork, String> {
        let (addr, prefix) = network
            .split_once('/')
            .ok_or_else(|| format!("overlay network `{network}` is not a.b.c.d/n"))?;
        let addr: Ipv4Addr = addr
            .trim()
            .parse()
            .map_err(|e| format!("overlay network `{network}`: {e}"))?;
        let prefix: u8 = prefix
            .trim()
            .parse()
            .ok()
            .filter(|p| *p <= 30)
            .ok_or_else(|| format!("overlay network `{network}`: bad prefix length"))?;
        if subnet_len <= prefix || subnet_len > 30 {
            return Err(format!(
                "SubnetLen {subnet_len} does not fit in {network} (it must be longer than /{prefix}, at most 30)"
            ));
        }
        let net = u32::from(addr) & mask(prefix);
        let size = 1u32 << (32 - subnet_len);
        let last = net | !mask(prefix);
        let parse = |what: &str, v: Option<&str>, default: u32| -> Result<u32, String> {
            match v {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<Ipv4Addr>()
                    .map(u32::from)
                    .map_err(|e| format!("{what} `{v}`: {e}")),
            }
        };
        let min = parse("SubnetMin", min, net + size)?;
        let max = parse("SubnetMax", max, (last & mask(subnet_len)) - size)?;
        let inside = |a: u32| a & mask(prefix) == net && a & !mask(subnet_len) == 0;
        if !inside(min) || !inside(max) || min > max {
            return Err(format!(
                "SubnetMin {} and SubnetMax {} must be /{subnet_len} subnets of {network}, in order",
                Ipv4Addr::from(min),
                Ipv4Addr::from(max)
            ));
        }
        Ok(OverlayNetwork {
            network: net.into(),
            prefix,
            subnet_len,
            subnet_min: min.into(),
            subnet_max: max.into(),
        })
    }

    /// `a.b.c.d/n`.
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.network, self.prefix)
    }

    /// The configuration flannel reads, as JSON.
    pub fn config_json(&self) -> serde_json::Value {
        serde_json::json!({
            "Network": self.cidr(), "SubnetLen": self.subnet_len,
            "SubnetMin": self.subnet_min.to_string(), "SubnetMax": self.subnet_max.to_string(),
            "Backend": {"Type": "wireguard"}
        })
    }

    /// Whether flannel would lease `subnet` (`a.b.c.d/len`) in this network.
    pub fn accepts(&self, subnet: &str) -> bool {
        let Some((addr, len)) = subnet.split_once('/') else {
            return false;
        };
        let (Ok(addr), Ok(len)) = (addr.parse::<Ipv4Addr>(), len.parse::<u8>()) else {
            return false;
        };
        let a = u32::from(addr);
        len == self.subnet_len
            && a & !mask(len) == 0
            && a >= u32::from(self.subnet_min)
            && a <= u32::from(self.subnet_max)
    }

    /// Every subnet flannel may lease, in order.
    pub fn subnets(&self) -> impl Iterator<Item = Ipv4Addr> {
        let size = 1u32 << (32 - self.subnet_len);
        let (min, max) = (u32::from(self.subnet_min), u32::from(self.subnet_max));
        (0..=(max - min) / size).map(move |k| Ipv4Addr::from(min + k * size))
    }
}

fn mask(len: u8) -> u32 {
    if len == 0 { 0 } else { u32::MAX << (32 - len) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_dart_templates_network_leases_only_inside_its_range() {
        let net =
            OverlayNetwork::new("10.0.0.0/8", 24, Some("10.10.0.0"), Some("10.99.0.0")).unwrap();
        let first: Vec<String> = net.subnets().take(2).map(|a| a.to_string()).collect();
        assert_eq!(first, ["10.10.0.0", "10.10.1.0"]);
        assert_eq!(net.subnets().last().unwrap().to_string(), "10.99.0.0");
        assert_eq!(net.subnets().count(), 89 * 256 + 1);
        assert!(net.subnets().all(|a| net.accepts(&format!("{a}/24"))));
        assert!(!net.accepts("10.100.1.0/24"), "our old default is outside");
        assert!(!net.accepts("10.9.255.0/24") && !net.accepts("10.99.1.0/24"));
        assert!(!net.accepts("10.10.0.0/16") && !net.accepts("10.10.0.128/24"));
        assert_eq!(
            net.config_json(),
            serde_json::json!({"Network": "10.0.0.0/8", "SubnetLen": 24, "SubnetMin": "10.10.0.0",
                "SubnetMax": "10.99.0.0", "Backend": {"Type": "wireguard"}})
        );
    }

    #[test]
    fn flannels_defaults_and_bad_configurations() {
        let d = OverlayNetwork::default();
        assert_eq!(d.cidr(), "10.100.0.0/16");
        assert_eq!(d.subnet_min.to_string(), "10.100.1.0");
        assert_eq!(d.subnet_max.to_string(), "10.100.254.0");
        for (net, len, min, max) in [
            ("10.0.0.0", 24, None, None),
            ("10.0.0.0/8", 8, None, None),
            ("10.0.0.0/8", 24, Some("11.0.0.0"), None),
            ("10.0.0.0/8", 24, Some("10.10.0.1"), None),
            ("10.0.0.0/8", 24, Some("10.20.0.0"), Some("10.10.0.0")),
        ] {
            assert!(
                OverlayNetwork::new(net, len, min, max).is_err(),
                "{net} {len} {min:?} {max:?}"
            );
        }
    }
}
