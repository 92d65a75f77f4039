//! The Timer trigger event (<https://intl.cloud.tencent.com/document/product/583/9708>).

use serde::{Deserialize, Serialize};

/// `{"Type":"Timer","TriggerName":"EveryDay","Time":"2019-02-21T11:49:00Z","Message":"…"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct TimerEvent {
    /// Always `Timer`.
    #[serde(rename = "Type")]
    pub kind: String,
    /// The trigger's name.
    #[serde(default)]
    pub trigger_name: String,
    /// Firing time, UTC, RFC 3339.
    pub time: String,
    /// The user message configured on the trigger (≤4 KB, empty by default).
    #[serde(default)]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_documented_timer_event() {
        let event: TimerEvent = serde_json::from_str(
            r#"{ "Type": "Timer", "TriggerName": "EveryDay", "Time": "2019-02-21T11:49:00Z", "Message": "user define msg body" }"#,
        )
        .unwrap();
        assert_eq!(event.kind, "Timer");
        assert_eq!(event.trigger_name, "EveryDay");
        assert_eq!(event.time, "2019-02-21T11:49:00Z");
        assert_eq!(event.message, "user define msg body");
    }

    #[test]
    fn message_is_optional() {
        let event: TimerEvent =
            serde_json::from_str(r#"{"Type":"Timer","Time":"2019-02-21T11:49:00Z"}"#).unwrap();
        assert_eq!(event.message, "");
    }
}
