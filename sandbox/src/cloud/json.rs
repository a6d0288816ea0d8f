//! Hetzner Cloud objects as JSON, shaped as `hcloud.openapi.json` describes them, and the catalog.

use serde_json::{Value, json};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// RFC 3339 in UTC, as Hetzner writes timestamps.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3_600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// A catalog entry: name and id.
pub struct Entry {
    /// Hetzner id.
    pub id: i64,
    /// Hetzner name.
    pub name: &'static str,
}

/// Locations the fake offers.
pub const LOCATIONS: [(Entry, &str, &str); 3] = [
    (
        Entry {
            id: 1,
            name: "fsn1",
        },
        "Falkenstein",
        "DE",
    ),
    (
        Entry {
            id: 2,
            name: "nbg1",
        },
        "Nuremberg",
        "DE",
    ),
    (
        Entry {
            id: 3,
            name: "hel1",
        },
        "Helsinki",
        "FI",
    ),
];

/// The index in [`LOCATIONS`] of the location a server gets when its create names none.
pub const DEFAULT_LOCATION: usize = 0;

/// Server types the fake offers: (entry, cores, memory GB, disk GB).
pub const SERVER_TYPES: [(Entry, i64, f64, f64); 4] = [
    (
        Entry {
            id: 22,
            name: "cx22",
        },
        2,
        4.0,
        40.0,
    ),
    (
        Entry {
            id: 23,
            name: "cx32",
        },
        4,
        8.0,
        80.0,
    ),
    (
        Entry {
            id: 24,
            name: "cpx11",
        },
        2,
        2.0,
        40.0,
    ),
    (
        // The Dart nix-infra templates' default machine type.
        Entry {
            id: 25,
            name: "cpx21",
        },
        3,
        4.0,
        80.0,
    ),
];

/// Images the fake offers: (entry, flavor, version).
pub const IMAGES: [(Entry, &str, &str); 3] = [
    (
        Entry {
            id: 161,
            name: "ubuntu-22.04",
        },
        "ubuntu",
        "22.04",
    ),
    (
        Entry {
            id: 162,
            name: "ubuntu-24.04",
        },
        "ubuntu",
        "24.04",
    ),
    (
        Entry {
            id: 114,
            name: "debian-12",
        },
        "debian",
        "12",
    ),
];

/// A location object.
pub fn location(i: usize) -> Value {
    let (e, city, country) = &LOCATIONS[i];
    json!({
        "id": e.id, "name": e.name, "description": format!("{city} DC Park 1"),
        "city": city, "country": country, "latitude": 50.47612, "longitude": 12.370071,
        "network_zone": "eu-central",
    })
}

/// A data center object for location `i`.
pub fn datacenter(i: usize) -> Value {
    let ids: Vec<i64> = SERVER_TYPES.iter().map(|t| t.0.id).collect();
    json!({
        "id": LOCATIONS[i].0.id, "name": format!("{}-dc1", LOCATIONS[i].0.name),
        "description": format!("{} DC 1", LOCATIONS[i].1), "location": location(i),
        "server_types": { "available": ids, "available_for_migration": ids, "supported": ids },
    })
}

/// A server type object.
pub fn server_type(i: usize) -> Value {
    let (e, cores, memory, disk) = &SERVER_TYPES[i];
    let price = json!({ "gross": "0.0000", "net": "0.0000" });
    json!({
        "id": e.id, "name": e.name, "description": e.name.to_uppercase(), "category": "Shared vCPU",
        "cores": cores, "memory": memory, "disk": disk, "deprecated": false, "deprecation": null,
        "cpu_type": "shared", "storage_type": "local", "architecture": "x86",
        // `available` and `recommended` are beyond the published description
        // (see testkit/openapi/additions.json): Hetzner sends them and current
        // clients require them. Every type can be ordered everywhere here, and the
        // default location (the first, used when a create names none) is the
        // recommended one.
        "locations": LOCATIONS
            .iter()
            .enumerate()
            .map(|(i, (l, _, _))| json!({
                "id": l.id, "name": l.name, "deprecation": null,
                "available": true, "recommended": i == DEFAULT_LOCATION,
            }))
            .collect::<Vec<_>>(),
        "prices": LOCATIONS.iter().map(|(l, _, _)| json!({
            "location": l.name, "included_traffic": 21_990_232_555_520_i64,
            "price_hourly": price, "price_monthly": price, "price_per_tb_traffic": price,
        })).collect::<Vec<_>>(),
    })
}

/// An image object.
pub fn image(i: usize) -> Value {
    let (e, flavor, version) = &IMAGES[i];
    json!({
        "id": e.id, "name": e.name, "description": e.name, "type": "system", "status": "available",
        "architecture": "x86", "os_flavor": flavor, "os_version": version, "rapid_deploy": true,
        "disk_size": 5, "image_size": null, "created": "2024-04-25T00:00:00Z", "created_from": null,
        "bound_to": null, "deleted": null, "deprecated": null, "labels": {},
        "protection": { "delete": false },
    })
}

/// The pagination block of a list response.
pub fn meta(page: usize, per_page: usize, total: usize) -> Value {
    let last = total.div_ceil(per_page).max(1);
    json!({ "pagination": {
        "page": page, "per_page": per_page, "total_entries": total, "last_page": last,
        "previous_page": if page > 1 { Some(page - 1) } else { None },
        "next_page": if page < last { Some(page + 1) } else { None },
    }})
}

/// An error body in Hetzner's shape.
pub fn error(code: &str, message: &str) -> Value {
    json!({ "error": { "code": code, "message": message, "details": {} } })
}
