//! The `messages:send` body, `{"validate_only"?: bool, "message": {...}}`, parsed and checked as
//! FCM checks it before anything is sent.
//!
//! - Exactly one target: `token` | `topic` | `condition` (an empty string is unset, as in proto3).
//!   A topic is `[A-Za-z0-9-_.~%]+` (no `/topics/` prefix in v1).
//! - `notification {title, body, image}`: strings, nothing else.
//! - `data`: a map of string to string; a non-string value, or a key FCM reserves (`from`,
//!   `message_type`, anything starting `google` or `gcm`), is `INVALID_ARGUMENT`.
//! - `android {collapse_key, priority: "normal"|"high", ttl: "<seconds>s" (≤ 2,419,200 s),
//!   restricted_package_name, data, notification {channel_id, title, body, …}, fcm_options,
//!   direct_boot_ok}`; `apns {headers, payload {aps}, fcm_options, live_activity_token}`;
//!   `webpush {headers, data, notification, fcm_options}`. Their known fields are type-checked;
//!   unknown fields of `android.notification` and of the `fcm_options` pass, others are refused.
//! - The whole `message`, encoded as compact JSON, is at most [`PAYLOAD_BYTES_MAX`] bytes.
//!
//! Field names are accepted in either proto3 JSON spelling (`collapse_key` or `collapseKey`);
//! `null` means unset. Errors name the field the way Google does (`message.data[0].value`).

use std::{fmt, io};

use serde_json::{Map, Value};

use super::error::FcmError;

/// FCM's limit for a message's payload.
pub const PAYLOAD_BYTES_MAX: usize = 4096;
/// Four weeks: FCM's longest time to live.
pub const TTL_SECONDS_MAX: u64 = 2_419_200;

/// Where a message goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    Token(String),
    Topic(String),
    Condition(String),
}

impl Target {
    /// The field that names it: `token`, `topic` or `condition`.
    pub fn field(&self) -> &'static str {
        match self {
            Self::Token(_) => "token",
            Self::Topic(_) => "topic",
            Self::Condition(_) => "condition",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Self::Token(value) | Self::Topic(value) | Self::Condition(value) => value,
        }
    }

    /// The device token, for a message sent to one device.
    pub fn token(&self) -> Option<&str> {
        match self {
            Self::Token(token) => Some(token),
            Self::Topic(_) | Self::Condition(_) => None,
        }
    }
}

/// A checked message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub target: Target,
    /// Everything else in the message, as compact JSON: what the delivery log keeps.
    pub rest: Box<str>,
}

/// A checked `messages:send` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SendRequest {
    pub validate_only: bool,
    pub message: Message,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Str,
    Bool,
    /// `map<string, string>` (`headers`).
    StrMap,
    /// `map<string, string>` whose keys FCM partly reserves (`data`).
    DataMap,
    /// A message whose fields are all known: unknown ones are refused.
    Strict(&'static [Field]),
    /// A message checked lightly: known fields are type-checked, others pass.
    Lenient(&'static [Field]),
    /// `google.protobuf.Struct`: any object.
    Struct,
    /// The APNs payload: any object whose `aps`, if present, is an object.
    ApnsPayload,
    /// `AndroidMessagePriority`.
    Priority,
    /// `google.protobuf.Duration`, bounded by [`TTL_SECONDS_MAX`].
    Ttl,
}

#[derive(Debug, Clone, Copy)]
struct Field {
    name: &'static str,
    camel: &'static str,
    kind: Kind,
}

const fn field(name: &'static str, camel: &'static str, kind: Kind) -> Field {
    Field { name, camel, kind }
}

const TARGETS: [&str; 3] = ["token", "topic", "condition"];

const MESSAGE: &[Field] = &[
    field("name", "name", Kind::Str),
    field("data", "data", Kind::DataMap),
    field("notification", "notification", Kind::Strict(NOTIFICATION)),
    field("android", "android", Kind::Strict(ANDROID)),
    field("webpush", "webpush", Kind::Strict(WEBPUSH)),
    field("apns", "apns", Kind::Strict(APNS)),
    field("fcm_options", "fcmOptions", Kind::Lenient(FCM_OPTIONS)),
    field("token", "token", Kind::Str),
    field("topic", "topic", Kind::Str),
    field("condition", "condition", Kind::Str),
];

const NOTIFICATION: &[Field] = &[
    field("title", "title", Kind::Str),
    field("body", "body", Kind::Str),
    field("image", "image", Kind::Str),
];

const FCM_OPTIONS: &[Field] = &[field("analytics_label", "analyticsLabel", Kind::Str)];

const ANDROID: &[Field] = &[
    field("collapse_key", "collapseKey", Kind::Str),
    field("priority", "priority", Kind::Priority),
    field("ttl", "ttl", Kind::Ttl),
    field(
        "restricted_package_name",
        "restrictedPackageName",
        Kind::Str,
    ),
    field("data", "data", Kind::DataMap),
    field(
        "notification",
        "notification",
        Kind::Lenient(ANDROID_NOTIFICATION),
    ),
    field("fcm_options", "fcmOptions", Kind::Lenient(FCM_OPTIONS)),
    field("direct_boot_ok", "directBootOk", Kind::Bool),
    field(
        "bandwidth_constrained_ok",
        "bandwidthConstrainedOk",
        Kind::Bool,
    ),
    field(
        "restricted_satellite_ok",
        "restrictedSatelliteOk",
        Kind::Bool,
    ),
];

const ANDROID_NOTIFICATION: &[Field] = &[
    field("title", "title", Kind::Str),
    field("body", "body", Kind::Str),
    field("icon", "icon", Kind::Str),
    field("color", "color", Kind::Str),
    field("sound", "sound", Kind::Str),
    field("tag", "tag", Kind::Str),
    field("click_action", "clickAction", Kind::Str),
    field("body_loc_key", "bodyLocKey", Kind::Str),
    field("title_loc_key", "titleLocKey", Kind::Str),
    field("channel_id", "channelId", Kind::Str),
    field("ticker", "ticker", Kind::Str),
    field("image", "image", Kind::Str),
    field("sticky", "sticky", Kind::Bool),
    field("local_only", "localOnly", Kind::Bool),
    field("default_sound", "defaultSound", Kind::Bool),
];

const APNS: &[Field] = &[
    field("headers", "headers", Kind::StrMap),
    field("payload", "payload", Kind::ApnsPayload),
    field("fcm_options", "fcmOptions", Kind::Lenient(APNS_FCM_OPTIONS)),
    field("live_activity_token", "liveActivityToken", Kind::Str),
];

const APNS_FCM_OPTIONS: &[Field] = &[
    field("analytics_label", "analyticsLabel", Kind::Str),
    field("image", "image", Kind::Str),
];

const WEBPUSH: &[Field] = &[
    field("headers", "headers", Kind::StrMap),
    field("data", "data", Kind::StrMap),
    field("notification", "notification", Kind::Struct),
    field(
        "fcm_options",
        "fcmOptions",
        Kind::Lenient(WEBPUSH_FCM_OPTIONS),
    ),
];

const WEBPUSH_FCM_OPTIONS: &[Field] = &[
    field("link", "link", Kind::Str),
    field("analytics_label", "analyticsLabel", Kind::Str),
];

/// A field's path, built only when an error names it (the happy path allocates nothing for it).
#[derive(Clone, Copy)]
struct FieldPath<'a> {
    parent: Option<&'a FieldPath<'a>>,
    name: &'a str,
    index: Option<usize>,
}

/// `message`, where every path of the message starts.
const MESSAGE_PATH: FieldPath<'static> = FieldPath {
    parent: None,
    name: "message",
    index: None,
};

impl<'a> FieldPath<'a> {
    fn child(&'a self, name: &'a str) -> Self {
        Self {
            parent: Some(self),
            name,
            index: None,
        }
    }

    /// `data[3].value`-style: the map entry at `index`.
    fn entry(&'a self, index: usize) -> Self {
        Self {
            parent: self.parent,
            name: self.name,
            index: Some(index),
        }
    }
}

impl fmt::Display for FieldPath<'_> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(parent) = self.parent {
            write!(formatter, "{parent}.")?;
        }
        formatter.write_str(self.name)?;
        if let Some(index) = self.index {
            write!(formatter, "[{index}]")?;
        }
        Ok(())
    }
}

fn invalid_value(path: &FieldPath<'_>, type_name: &str, value: &Value) -> FcmError {
    let field = path.to_string();
    let message = format!("Invalid value at '{field}' ({type_name}), {value}");
    FcmError::invalid_field(field, message)
}

fn unknown_name(key: &str, path: Option<&FieldPath<'_>>) -> FcmError {
    let message = match path {
        Some(path) => format!(
            "Invalid JSON payload received. Unknown name \"{key}\" at '{path}': Cannot find field."
        ),
        None => {
            format!("Invalid JSON payload received. Unknown name \"{key}\": Cannot find field.")
        }
    };
    let field = path.map_or_else(|| key.to_owned(), ToString::to_string);
    FcmError::invalid_field(field, message)
}

/// Keys FCM keeps for itself in `data`.
fn is_reserved_data_key(key: &str) -> bool {
    key == "from" || key == "message_type" || key.starts_with("google") || key.starts_with("gcm")
}

fn is_topic_name(topic: &str) -> bool {
    !topic.is_empty()
        && topic
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || b"-_.~%".contains(&byte))
}

/// `"<seconds>[.<up to 9 digits>]s"` as whole seconds and nanoseconds.
pub fn parse_duration(text: &str) -> Option<(u64, u32)> {
    let number = text.strip_suffix('s')?;
    let (seconds, fraction) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
    if seconds.is_empty() || !all_digits(seconds) || !all_digits(fraction) || fraction.len() > 9 {
        return None;
    }
    if number.ends_with('.') {
        return None;
    }
    let nanos = if fraction.is_empty() {
        0
    } else {
        let digits: u32 = fraction.parse().ok()?;
        digits * 10_u32.pow(9 - u32::try_from(fraction.len()).ok()?)
    };
    Some((seconds.parse().ok()?, nanos))
}

fn check_ttl(value: &Value, path: &FieldPath<'_>) -> Result<(), FcmError> {
    const DURATION_TYPE: &str = "type.googleapis.com/google.protobuf.Duration";
    let (seconds, nanos) = value
        .as_str()
        .and_then(parse_duration)
        .ok_or_else(|| invalid_value(path, DURATION_TYPE, value))?;
    if seconds > TTL_SECONDS_MAX || (seconds == TTL_SECONDS_MAX && nanos > 0) {
        let field = path.to_string();
        let message = format!(
            "Invalid value at '{field}' ({DURATION_TYPE}), {value}: the TTL must be at most \
             {TTL_SECONDS_MAX}s (four weeks)"
        );
        return Err(FcmError::invalid_field(field, message));
    }
    Ok(())
}

fn check_map(value: &Value, path: &FieldPath<'_>, reserved_keys: bool) -> Result<(), FcmError> {
    let map = value
        .as_object()
        .ok_or_else(|| invalid_value(path, "TYPE_MESSAGE", value))?;
    for (index, (key, entry)) in map.iter().enumerate() {
        if !entry.is_string() {
            let at = path.entry(index);
            return Err(invalid_value(&at.child("value"), "TYPE_STRING", entry));
        }
        if reserved_keys && is_reserved_data_key(key) {
            let field = path.entry(index).child("key").to_string();
            let message = format!("Invalid data payload key: {key}");
            return Err(FcmError::invalid_field(field, message));
        }
    }
    Ok(())
}

fn check_object(
    object: &Map<String, Value>,
    fields: &[Field],
    strict: bool,
    path: &FieldPath<'_>,
) -> Result<(), FcmError> {
    for (key, value) in object {
        let known = fields
            .iter()
            .find(|field| field.name == key || field.camel == key);
        match known {
            Some(field) => check_value(value, field.kind, &path.child(field.name))?,
            None if strict => return Err(unknown_name(key, Some(path))),
            None => {}
        }
    }
    Ok(())
}

fn as_object<'v>(
    value: &'v Value,
    path: &FieldPath<'_>,
) -> Result<&'v Map<String, Value>, FcmError> {
    value
        .as_object()
        .ok_or_else(|| invalid_value(path, "TYPE_MESSAGE", value))
}

fn check_value(value: &Value, kind: Kind, path: &FieldPath<'_>) -> Result<(), FcmError> {
    if value.is_null() {
        return Ok(());
    }
    let object = |value| as_object(value, path);
    match kind {
        Kind::Str if value.is_string() => Ok(()),
        Kind::Str => Err(invalid_value(path, "TYPE_STRING", value)),
        Kind::Bool if value.is_boolean() => Ok(()),
        Kind::Bool => Err(invalid_value(path, "TYPE_BOOL", value)),
        Kind::StrMap => check_map(value, path, false),
        Kind::DataMap => check_map(value, path, true),
        Kind::Strict(fields) => check_object(object(value)?, fields, true, path),
        Kind::Lenient(fields) => check_object(object(value)?, fields, false, path),
        Kind::Struct => object(value).map(|_| ()),
        Kind::ApnsPayload => match object(value)?.get("aps") {
            Some(aps) if !aps.is_object() && !aps.is_null() => {
                Err(invalid_value(&path.child("aps"), "TYPE_MESSAGE", aps))
            }
            _ => Ok(()),
        },
        Kind::Priority => {
            let known = value.as_str().is_some_and(|priority| {
                priority.eq_ignore_ascii_case("normal") || priority.eq_ignore_ascii_case("high")
            });
            if known {
                Ok(())
            } else {
                Err(invalid_value(
                    path,
                    "type.googleapis.com/google.firebase.fcm.v1.AndroidMessagePriority",
                    value,
                ))
            }
        }
        Kind::Ttl => check_ttl(value, path),
    }
}

/// Counts bytes written: the encoded size of a message without building it.
struct ByteCount(usize);

impl io::Write for ByteCount {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn encoded_bytes(value: &Map<String, Value>) -> usize {
    let mut count = ByteCount(0);
    // Writing a `Value` to a writer that never fails cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
}

/// The one target of `message`, taken out of it.
fn take_target(message: &mut Map<String, Value>) -> Result<Target, FcmError> {
    let set = |name: &str| {
        message
            .get(name)
            .and_then(Value::as_str)
            .is_some_and(|value| !value.is_empty())
    };
    let mut names = TARGETS.into_iter().filter(|name| set(name));
    let first = names.next();
    if let Some(second) = names.next() {
        let message = format!(
            "Invalid value at 'message' (oneof), oneof field 'target' is already set. Cannot \
             overwrite with '{second}'"
        );
        return Err(FcmError::invalid_field("message", message));
    }
    let Some(name) = first else {
        return Err(FcmError::new(
            super::error::ErrorCode::InvalidArgument,
            "Recipient of the message is not set.",
        ));
    };
    let value = match message.remove(name) {
        Some(Value::String(value)) => value,
        _ => String::new(),
    };
    for unset in TARGETS {
        message.remove(unset);
    }
    match name {
        "token" => Ok(Target::Token(value)),
        "topic" if is_topic_name(&value) => Ok(Target::Topic(value)),
        "topic" => {
            let path = MESSAGE_PATH;
            Err(invalid_value(
                &path.child("topic"),
                "TYPE_STRING",
                &Value::String(value),
            ))
        }
        _ => Ok(Target::Condition(value)),
    }
}

/// Parses and checks a `messages:send` body.
///
/// # Errors
/// `INVALID_ARGUMENT`, with Google's message, for the first thing wrong.
pub fn parse_send_request(body: &[u8]) -> Result<SendRequest, FcmError> {
    let request: Value = serde_json::from_slice(body).map_err(|error| {
        FcmError::new(
            super::error::ErrorCode::InvalidArgument,
            format!("Invalid JSON payload received. {error}"),
        )
    })?;
    let Value::Object(request) = request else {
        return Err(FcmError::new(
            super::error::ErrorCode::InvalidArgument,
            "Invalid JSON payload received. Expected an object.",
        ));
    };
    let mut validate_only = false;
    let mut message = None;
    for (key, value) in request {
        match key.as_str() {
            "validate_only" | "validateOnly" => match value {
                Value::Bool(flag) => validate_only = flag,
                Value::Null => {}
                other => {
                    let path = FieldPath {
                        parent: None,
                        name: "validate_only",
                        index: None,
                    };
                    return Err(invalid_value(&path, "TYPE_BOOL", &other));
                }
            },
            "message" => message = Some(value),
            other => return Err(unknown_name(other, None)),
        }
    }
    let mut message = match message {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(message)) => message,
        Some(other) => {
            return Err(invalid_value(&MESSAGE_PATH, "TYPE_MESSAGE", &other));
        }
    };
    check_object(&message, MESSAGE, true, &MESSAGE_PATH)?;
    let payload_bytes = encoded_bytes(&message);
    if payload_bytes > PAYLOAD_BYTES_MAX {
        let message = format!(
            "Message is too big: {payload_bytes} bytes, at most {PAYLOAD_BYTES_MAX} allowed"
        );
        return Err(FcmError::invalid_field("message", message));
    }
    let target = take_target(&mut message)?;
    let rest = Value::Object(message).to_string().into_boxed_str();
    Ok(SendRequest {
        validate_only,
        message: Message { target, rest },
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fcm::error::{BAD_REQUEST_TYPE, ErrorCode};
    use serde_json::json;

    fn parse(body: &Value) -> Result<SendRequest, FcmError> {
        parse_send_request(body.to_string().as_bytes())
    }

    fn refused(body: &Value) -> FcmError {
        match parse(body) {
            Ok(request) => unreachable!("accepted: {request:?}"),
            Err(error) => error,
        }
    }

    fn assert_invalid(body: &Value, field: &str) -> FcmError {
        let error = refused(body);
        assert_eq!(error.code, ErrorCode::InvalidArgument, "{body}");
        let json = error.to_json();
        assert_eq!(json["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(json["error"]["details"][0]["errorCode"], "INVALID_ARGUMENT");
        if !field.is_empty() {
            assert_eq!(error.field.as_deref(), Some(field), "{}", error.message);
            assert_eq!(json["error"]["details"][1]["@type"], BAD_REQUEST_TYPE);
        }
        error
    }

    fn full_message() -> Value {
        json!({
            "token": "device-token-1",
            "notification": {"title": "도전 결과", "body": "성공했어요", "image": "https://x/y.png"},
            "data": {"challengeId": "c-1", "kind": "settled"},
            "android": {
                "priority": "high",
                "ttl": "3600s",
                "collapse_key": "settlement",
                "notification": {"channel_id": "settlement", "click_action": "OPEN", "notification_priority": "PRIORITY_HIGH"},
            },
            "apns": {"headers": {"apns-priority": "10"}, "payload": {"aps": {"sound": "default"}}},
            "webpush": {"headers": {"Urgency": "high"}, "data": {"a": "b"}, "notification": {"title": "t"}},
            "fcm_options": {"analytics_label": "settle"},
        })
    }

    #[test]
    fn a_full_message_to_a_token_is_accepted_and_the_target_is_taken_out() {
        let request = parse(&json!({"message": full_message()}));
        let request = request.unwrap();
        assert!(!request.validate_only);
        assert_eq!(
            request.message.target,
            Target::Token("device-token-1".to_owned())
        );
        let rest: Value = serde_json::from_str(&request.message.rest).unwrap_or_default();
        assert_eq!(rest["data"]["kind"], "settled");
        assert_eq!(rest["android"]["ttl"], "3600s");
        assert!(rest.get("token").is_none());
    }

    #[test]
    fn camel_case_names_and_validate_only_are_accepted() {
        let body = json!({
            "validateOnly": true,
            "message": {"topic": "weather", "android": {"collapseKey": "k", "restrictedPackageName": "p", "notification": {"channelId": "c"}}}
        });
        let request = parse(&body).unwrap();
        assert!(request.validate_only);
        assert_eq!(request.message.target, Target::Topic("weather".to_owned()));
    }

    #[test]
    fn a_message_with_two_targets_is_invalid_argument() {
        let error = assert_invalid(
            &json!({"message": {"token": "t", "topic": "news"}}),
            "message",
        );
        assert!(
            error
                .message
                .contains("oneof field 'target' is already set")
        );
        assert!(error.message.contains("'topic'"));
        assert_invalid(
            &json!({"message": {"topic": "news", "condition": "'a' in topics"}}),
            "message",
        );
    }

    #[test]
    fn a_message_without_a_target_is_invalid_argument() {
        for body in [
            json!({"message": {"notification": {"title": "t"}}}),
            json!({"message": {"token": ""}}),
            json!({}),
        ] {
            let error = assert_invalid(&body, "");
            assert_eq!(error.message, "Recipient of the message is not set.");
        }
    }

    #[test]
    fn a_data_value_that_is_not_a_string_is_invalid_argument() {
        let error = assert_invalid(
            &json!({"message": {"token": "t", "data": {"a": "x", "b": 1}}}),
            "message.data[1].value",
        );
        assert_eq!(
            error.message,
            "Invalid value at 'message.data[1].value' (TYPE_STRING), 1"
        );
        assert_invalid(
            &json!({"message": {"token": "t", "android": {"data": {"a": {"nested": "x"}}}}}),
            "message.android.data[0].value",
        );
        assert_invalid(
            &json!({"message": {"token": "t", "data": ["a"]}}),
            "message.data",
        );
    }

    #[test]
    fn a_reserved_data_key_is_invalid_argument() {
        for key in ["from", "message_type", "google.c.a", "gcm.notification"] {
            assert_invalid(
                &json!({"message": {"token": "t", "data": {key: "x"}}}),
                "message.data[0].key",
            );
        }
    }

    #[test]
    fn a_notification_field_that_is_not_a_string_or_unknown_is_invalid_argument() {
        assert_invalid(
            &json!({"message": {"token": "t", "notification": {"title": 5}}}),
            "message.notification.title",
        );
        let error = assert_invalid(
            &json!({"message": {"token": "t", "notification": {"subtitle": "x"}}}),
            "message.notification",
        );
        assert!(
            error
                .message
                .contains("Unknown name \"subtitle\" at 'message.notification'")
        );
        assert_invalid(&json!({"message": {"token": "t", "extra": 1}}), "message");
        assert_invalid(&json!({"message": {"token": "t"}, "extra": 1}), "extra");
    }

    #[test]
    fn android_priority_and_ttl_are_checked() {
        let android = |android: Value| json!({"message": {"token": "t", "android": android}});
        assert_invalid(
            &android(json!({"priority": "urgent"})),
            "message.android.priority",
        );
        for ttl in ["3600", "1.s", "-1s", "abc", "1.0000000001s"] {
            assert_invalid(&android(json!({"ttl": ttl})), "message.android.ttl");
        }
        assert_invalid(&android(json!({"ttl": 60})), "message.android.ttl");
        assert_invalid(&android(json!({"ttl": "2419201s"})), "message.android.ttl");
        assert_invalid(
            &android(json!({"ttl": "2419200.5s"})),
            "message.android.ttl",
        );
        for ttl in ["0s", "2419200s", "3.5s", "86400.000000001s"] {
            assert!(
                parse(&android(json!({"ttl": ttl, "priority": "NORMAL"}))).is_ok(),
                "{ttl}"
            );
        }
        assert_eq!(parse_duration("3.5s"), Some((3, 500_000_000)));
        assert_invalid(
            &android(json!({"notification": {"channel_id": 3}})),
            "message.android.notification.channel_id",
        );
    }

    #[test]
    fn apns_and_webpush_are_lightly_checked() {
        let with = |field: &str, value: Value| json!({"message": {"token": "t", field: value}});
        assert_invalid(
            &with("apns", json!({"headers": {"apns-priority": 10}})),
            "message.apns.headers[0].value",
        );
        assert_invalid(
            &with("apns", json!({"payload": {"aps": "x"}})),
            "message.apns.payload.aps",
        );
        assert_invalid(&with("apns", json!("x")), "message.apns");
        assert_invalid(
            &with("webpush", json!({"notification": "x"})),
            "message.webpush.notification",
        );
        assert_invalid(&with("webpush", json!({"vapid": "x"})), "message.webpush");
        assert!(
            parse(&with(
                "apns",
                json!({"payload": {"aps": {"alert": "x"}, "custom": 1}})
            ))
            .is_ok()
        );
    }

    #[test]
    fn a_payload_over_4096_bytes_is_invalid_argument() {
        let just_fits = |extra: usize| {
            // `{"data":{"k":"…"},"token":"t"}` is 29 bytes around the value.
            let value = "x".repeat(PAYLOAD_BYTES_MAX - 29 + extra);
            json!({"message": {"token": "t", "data": {"k": value}}})
        };
        assert!(parse(&just_fits(0)).is_ok());
        let error = assert_invalid(&just_fits(1), "message");
        assert!(error.message.contains("4097 bytes"), "{}", error.message);
    }

    #[test]
    fn a_topic_is_a_bare_name_and_malformed_json_is_invalid_argument() {
        assert_invalid(
            &json!({"message": {"topic": "/topics/news"}}),
            "message.topic",
        );
        assert!(parse(&json!({"message": {"topic": "news-2024_a.b~c%20"}})).is_ok());
        let error = parse_send_request(b"{\"message\":").err();
        assert_eq!(error.map(|e| e.code), Some(ErrorCode::InvalidArgument));
        assert!(parse(&json!({"validate_only": "yes", "message": {"token": "t"}})).is_err());
        assert!(parse(&json!({"message": {"token": "t", "notification": null}})).is_ok());
    }
}
