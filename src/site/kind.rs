//! The resource kinds of cloudlet, their id prefixes, plural names and scope.

use serde::{Deserialize, Serialize};

/// Whether a kind lives inside a project or belongs to the whole site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Owned by the site (projects, nodes); only site admins change them.
    Site,
    /// Owned by one project (tenant).
    Project,
}

macro_rules! kinds {
    ($( $variant:ident => $name:literal, $plural:literal, $prefix:literal, $scope:ident; )*) => {
        /// Every resource kind. The names follow the field's terms (AWS, Incus).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum Kind { $( $variant, )* }

        impl Kind {
            /// All kinds, in declaration order.
            pub const ALL: &'static [Kind] = &[ $( Kind::$variant, )* ];
            /// Singular snake-case name, as in the `kind` field (`security_group`).
            pub fn as_str(self) -> &'static str { match self { $( Kind::$variant => $name, )* } }
            /// Plural, dash-separated collection name, as in `/v1/<plural>` (`security-groups`).
            pub fn plural(self) -> &'static str { match self { $( Kind::$variant => $plural, )* } }
            /// The id prefix before `-<ULID>` (`sg`).
            pub fn prefix(self) -> &'static str { match self { $( Kind::$variant => $prefix, )* } }
            /// Site- or project-scoped.
            pub fn scope(self) -> Scope { match self { $( Kind::$variant => Scope::$scope, )* } }
        }
    };
}

kinds! {
    Project => "project", "projects", "proj", Site;
    Token => "token", "tokens", "tok", Project;
    User => "user", "users", "usr", Project;
    Node => "node", "nodes", "node", Site;
    Operation => "operation", "operations", "op", Project;
    Vpc => "vpc", "vpcs", "vpc", Project;
    Subnet => "subnet", "subnets", "subnet", Project;
    SecurityGroup => "security_group", "security-groups", "sg", Project;
    Eip => "eip", "eips", "eip", Project;
    NatGateway => "nat_gateway", "nat-gateways", "nat", Project;
    PortForward => "port_forward", "port-forwards", "pf", Project;
    LoadBalancer => "load_balancer", "load-balancers", "lb", Project;
    Image => "image", "images", "img", Project;
    Container => "container", "containers", "ctr", Project;
    Function => "function", "functions", "fn", Project;
    Volume => "volume", "volumes", "vol", Project;
    Snapshot => "snapshot", "snapshots", "snap", Project;
    Bucket => "bucket", "buckets", "bkt", Project;
    AccessKey => "access_key", "access-keys", "ak", Project;
    Instance => "instance", "instances", "i", Project;
    NetworkInterface => "network_interface", "network-interfaces", "eni", Project;
}

impl Kind {
    /// Parse the singular name (`"security_group"`).
    pub fn from_name(s: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// Parse the plural collection name (`"security-groups"`).
    pub fn from_plural(s: &str) -> Option<Kind> {
        Kind::ALL.iter().copied().find(|k| k.plural() == s)
    }

    /// The kind whose id prefix `id` carries, if `id` is shaped `<prefix>-<26 char ULID>`.
    pub fn of_id(id: &str) -> Option<Kind> {
        let (prefix, rest) = id.rsplit_once('-')?;
        if rest.len() != 26 || ulid::Ulid::from_string(rest).is_err() {
            return None;
        }
        Kind::ALL.iter().copied().find(|k| k.prefix() == prefix)
    }

    /// A fresh id for this kind: `<prefix>-<ULID>` (ULID spec: <https://github.com/ulid/spec>).
    pub fn new_id(self) -> String {
        format!("{}-{}", self.prefix(), ulid::Ulid::new())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_plurals_are_unique() {
        let mut p: Vec<_> = Kind::ALL.iter().map(|k| k.prefix()).collect();
        p.sort();
        p.dedup();
        assert_eq!(p.len(), Kind::ALL.len());
        let mut q: Vec<_> = Kind::ALL.iter().map(|k| k.plural()).collect();
        q.sort();
        q.dedup();
        assert_eq!(q.len(), Kind::ALL.len());
    }

    #[test]
    fn ids_round_trip_to_their_kind() {
        for k in Kind::ALL {
            let id = k.new_id();
            assert_eq!(Kind::of_id(&id), Some(*k), "{id}");
        }
        assert_eq!(Kind::of_id("proj-notaulid"), None);
        assert_eq!(Kind::of_id("default"), None);
        assert_eq!(Kind::from_plural("security-groups"), Some(Kind::SecurityGroup));
    }
}
