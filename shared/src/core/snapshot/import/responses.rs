//! The shapes of the template and topology responses (tccli `vpc/v20170312/api.json`, cfw
//! `DescribeAddressTemplateList`, cvm `DescribeInstances`), as serde reads them.

use super::*;

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct CfwTemplate {
    #[serde(deserialize_with = "text")]
    pub(super) uuid: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) name: String,
    #[serde(default, deserialize_with = "text")]
    pub(super) ip_string: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct VpcAddressTemplate {
    pub(super) address_template_id: String,
    #[serde(default)]
    pub(super) address_template_name: String,
    #[serde(default)]
    pub(super) address_set: Vec<String>,
    #[serde(default)]
    pub(super) address_extra_set: Vec<AddressExtra>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AddressExtra {
    pub(super) address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct VpcAddressTemplateGroup {
    pub(super) address_template_group_id: String,
    #[serde(default)]
    pub(super) address_template_group_name: String,
    #[serde(default)]
    pub(super) address_template_id_set: Vec<String>,
    #[serde(default)]
    pub(super) address_template_set: Vec<AddressTemplateRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AddressTemplateRef {
    pub(super) address_template_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct VpcServiceTemplate {
    pub(super) service_template_id: String,
    #[serde(default)]
    pub(super) service_template_name: String,
    #[serde(default)]
    pub(super) service_set: Vec<String>,
    #[serde(default)]
    pub(super) service_extra_set: Vec<ServiceExtra>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ServiceExtra {
    pub(super) service: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct VpcServiceTemplateGroup {
    pub(super) service_template_group_id: String,
    #[serde(default)]
    pub(super) service_template_group_name: String,
    #[serde(default)]
    pub(super) service_template_id_set: Vec<String>,
    #[serde(default)]
    pub(super) service_template_set: Vec<ServiceTemplateRef>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct ServiceTemplateRef {
    pub(super) service_template_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RawVpc {
    pub(super) vpc_id: String,
    #[serde(default)]
    pub(super) vpc_name: String,
    pub(super) cidr_block: String,
    #[serde(default)]
    pub(super) ipv6_cidr_block: Option<String>,
    #[serde(default)]
    pub(super) assistant_cidr_set: Vec<AssistantCidr>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct AssistantCidr {
    pub(super) cidr_block: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RawSubnet {
    pub(super) vpc_id: String,
    pub(super) subnet_id: String,
    #[serde(default)]
    pub(super) subnet_name: String,
    pub(super) cidr_block: String,
    #[serde(default)]
    pub(super) ipv6_cidr_block: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RawEni {
    pub(super) network_interface_id: String,
    /// A `null` name costs only the name.
    #[serde(default)]
    pub(super) network_interface_name: Option<String>,
    pub(super) vpc_id: String,
    pub(super) subnet_id: String,
    #[serde(default)]
    pub(super) private_ip_address_set: Vec<PrivateIp>,
    #[serde(default)]
    pub(super) ipv6_address_set: Vec<Ipv6Address>,
    #[serde(default)]
    pub(super) attachment: Option<Attachment>,
}

/// A CVM instance (cvm `DescribeInstances`, tccli `cvm/v20170312/api.json`, `Instance`).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct RawInstance {
    pub(super) instance_id: String,
    #[serde(default)]
    pub(super) instance_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct PrivateIp {
    pub(super) private_ip_address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Ipv6Address {
    pub(super) address: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(super) struct Attachment {
    #[serde(default)]
    pub(super) instance_id: String,
}
