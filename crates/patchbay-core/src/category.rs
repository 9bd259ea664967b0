//! Integration categories and the hubs that define their adapter contracts
//! (SPEC-045 "Integration Categories").
//!
//! A *category* is what an operator filters the marketplace by; a *hub* is the
//! contract a spoke implements. Today every category has exactly one hub, but a
//! manifest names both so that a category can grow a second hub later without
//! changing the manifest format.

use serde::{Deserialize, Serialize};

/// What kind of external system an integration connects to.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Category {
    Payment,
    Shipping,
    Communication,
    Notification,
    Storage,
    DataSync,
    Webhook,
}

impl Category {
    /// Every category, in the order the marketplace shows them.
    pub const ALL: [Category; 7] = [
        Category::Payment,
        Category::Shipping,
        Category::Communication,
        Category::Notification,
        Category::Storage,
        Category::DataSync,
        Category::Webhook,
    ];

    /// The identifier used in manifests, URLs and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Category::Payment => "payment",
            Category::Shipping => "shipping",
            Category::Communication => "communication",
            Category::Notification => "notification",
            Category::Storage => "storage",
            Category::DataSync => "data_sync",
            Category::Webhook => "webhook",
        }
    }

    /// A human label for the admin panel.
    pub fn label(self) -> &'static str {
        match self {
            Category::Payment => "Payment",
            Category::Shipping => "Shipping",
            Category::Communication => "Communication",
            Category::Notification => "Notification",
            Category::Storage => "Storage",
            Category::DataSync => "Data Sync",
            Category::Webhook => "Webhook",
        }
    }

    /// The hubs whose spokes may belong to this category.
    pub fn hubs(self) -> &'static [Hub] {
        match self {
            Category::Payment => &[Hub::PaymentGateways],
            Category::Shipping => &[Hub::ShippingCarriers],
            Category::Communication => &[Hub::CommunicationChannels],
            Category::Notification => &[Hub::NotificationProviders],
            Category::Storage => &[Hub::StorageProviders],
            Category::DataSync => &[Hub::DataSync],
            Category::Webhook => &[Hub::WebhookEndpoints],
        }
    }

    /// Parses the identifier form (`data_sync`), as used in query strings.
    pub fn parse(s: &str) -> Option<Category> {
        Category::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for Category {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A hub: the named adapter contract that spokes of a category implement.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Hub {
    PaymentGateways,
    ShippingCarriers,
    CommunicationChannels,
    NotificationProviders,
    StorageProviders,
    DataSync,
    WebhookEndpoints,
}

impl Hub {
    /// Every hub, in the order of [`Category::ALL`].
    pub const ALL: [Hub; 7] = [
        Hub::PaymentGateways,
        Hub::ShippingCarriers,
        Hub::CommunicationChannels,
        Hub::NotificationProviders,
        Hub::StorageProviders,
        Hub::DataSync,
        Hub::WebhookEndpoints,
    ];

    /// The category whose spokes implement this hub.
    pub fn category(self) -> Category {
        match self {
            Hub::PaymentGateways => Category::Payment,
            Hub::ShippingCarriers => Category::Shipping,
            Hub::CommunicationChannels => Category::Communication,
            Hub::NotificationProviders => Category::Notification,
            Hub::StorageProviders => Category::Storage,
            Hub::DataSync => Category::DataSync,
            Hub::WebhookEndpoints => Category::Webhook,
        }
    }

    /// The contract of this hub: its actions with their input and output
    /// schemas (see [`crate::hub_contract`]).
    pub fn contract(self) -> &'static crate::hub_contract::HubContract {
        crate::hub_contract::contract(self)
    }

    /// The identifier used in manifests and the API.
    pub fn as_str(self) -> &'static str {
        match self {
            Hub::PaymentGateways => "payment_gateways",
            Hub::ShippingCarriers => "shipping_carriers",
            Hub::CommunicationChannels => "communication_channels",
            Hub::NotificationProviders => "notification_providers",
            Hub::StorageProviders => "storage_providers",
            Hub::DataSync => "data_sync",
            Hub::WebhookEndpoints => "webhook_endpoints",
        }
    }
}

impl Hub {
    /// The actions every spoke of this hub must provide (data sync and
    /// webhook endpoints work through streams and webhooks). Their input and
    /// output schemas, and the hub's optional actions, are in
    /// [`Hub::contract`].
    pub fn required_actions(self) -> &'static [&'static str] {
        match self {
            Hub::PaymentGateways => &["create_session", "capture", "refund", "get_status"],
            Hub::ShippingCarriers => &["get_rates", "create_shipment", "track"],
            Hub::CommunicationChannels => &["send_message"],
            Hub::NotificationProviders => &["send"],
            Hub::StorageProviders => &["put", "get", "delete", "list"],
            Hub::DataSync | Hub::WebhookEndpoints => &[],
        }
    }
}

impl std::fmt::Display for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_category_round_trips_through_its_identifier() {
        for c in Category::ALL {
            assert_eq!(Category::parse(c.as_str()), Some(c));
            assert!(!c.hubs().is_empty(), "{c} has no hub");
        }
        assert_eq!(Category::parse("Payment"), None);
    }

    #[test]
    fn each_hub_belongs_to_exactly_one_category() {
        let hubs: Vec<Hub> = Category::ALL
            .iter()
            .flat_map(|c| c.hubs().iter().copied())
            .collect();
        let mut unique = hubs.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(hubs.len(), unique.len());
        assert_eq!(hubs, Hub::ALL);
        for hub in Hub::ALL {
            assert!(hub.category().hubs().contains(&hub), "{hub}");
        }
    }
}
