//! The contract's enums and the domain's types name the same things.

use cpis_domain::CareSettingType;
use cpis_proto::common::CareSettingType as WireCareSettingType;

#[test]
fn every_care_setting_type_is_in_the_contract_and_back() {
    for setting in CareSettingType::ALL {
        let name = format!("CARE_SETTING_TYPE_{}", setting.code());
        assert!(
            WireCareSettingType::from_str_name(&name).is_some(),
            "{name} is not in the contract"
        );
    }
    for value in 1..100 {
        if let Ok(wire) = WireCareSettingType::try_from(value) {
            let code = wire.as_str_name().trim_start_matches("CARE_SETTING_TYPE_");
            assert!(
                code.parse::<CareSettingType>().is_ok(),
                "{code} is not in the domain"
            );
        }
    }
}
