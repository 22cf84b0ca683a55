//! What a notification says and how it is shaped for each platform, as pure functions: a row's
//! kind and payload become a title and a body ([`render`]), and those become one FCM HTTP v1
//! `message` per device ([`fcm_message`]).
//!
//! Every message carries the notification's id twice: in `data.notification_id`, so the app can
//! drop a message it has shown already (delivery is at least once), and as the platform's own
//! "replace, don't stack" key (Android `notification.tag`, APNs `apns-collapse-id`, Web Push
//! `tag`), so even an app that is not running shows a redelivered message once.

use serde_json::{Map, Value, json};

/// FCM refuses a message whose JSON is longer than this (FCM HTTP v1's documented limit).
pub const FCM_MESSAGE_BYTES_MAX: usize = 4096;
/// The Android notification channel every message is posted to; the app creates it at start.
pub const ANDROID_CHANNEL_ID: &str = "nene_default";
/// A body longer than this is cut: a lock screen shows two lines, and the payload bound must hold
/// whatever a payload field contains.
pub const BODY_CHARS_MAX: usize = 200;
/// Titles are ours and short; a payload-supplied name inside one is cut to this.
pub const NAME_CHARS_MAX: usize = 60;

/// A device's platform (one definition, with the devices it names).
pub use crate::auth::users::DevicePlatform;

/// What the user reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub title: String,
    pub body: String,
}

fn cut(text: &str, chars_max: usize) -> String {
    if text.chars().count() <= chars_max {
        return text.to_owned();
    }
    let mut cut: String = text.chars().take(chars_max.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

fn points(payload: &Value, field: &str) -> Option<String> {
    let amount = payload.get(field)?.as_i64()?;
    // 12345 → "12,345": Korean apps group by thousands too.
    let digits = amount.unsigned_abs().to_string();
    let mut grouped = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index) % 3 == 0 {
            grouped.push(',');
        }
        grouped.push(digit);
    }
    Some(if amount < 0 {
        format!("-{grouped}")
    } else {
        grouped
    })
}

fn name(payload: &Value, field: &str) -> Option<String> {
    payload
        .get(field)?
        .as_str()
        .filter(|name| !name.trim().is_empty())
        .map(|name| cut(name.trim(), NAME_CHARS_MAX))
}

/// The title and body of a notification of `kind` (the stored `notifications.kind`) with
/// `payload`. Kinds this build does not know, and payloads missing a field, still read well: the
/// text falls back to a general sentence rather than failing the send.
#[must_use]
pub fn render(kind: &str, payload: &Value) -> Rendered {
    let challenge = name(payload, "challenge_title");
    let (title, body) = match kind {
        "points_credited" => (
            "포인트 충전 완료".to_owned(),
            points(payload, "points").map_or_else(
                || "포인트가 충전되었어요.".to_owned(),
                |points| format!("{points}P가 충전되었어요."),
            ),
        ),
        "payment_canceled" => (
            "결제 취소".to_owned(),
            points(payload, "canceled_amount").map_or_else(
                || "결제가 취소되었어요.".to_owned(),
                |amount| format!("{amount}원 결제가 취소되었어요."),
            ),
        ),
        "refund_done" => (
            "환불 완료".to_owned(),
            points(payload, "amount").map_or_else(
                || "환불이 완료되었어요.".to_owned(),
                |amount| format!("{amount}원이 환불되었어요."),
            ),
        ),
        "challenge_canceled" => (
            "챌린지 취소".to_owned(),
            match points(payload, "refund") {
                Some(refund) => format!(
                    "{} 참가자가 모이지 않아 취소되었어요. {refund}P를 돌려드렸어요.",
                    challenge.as_deref().unwrap_or("챌린지가")
                ),
                None => "참가자가 모이지 않아 챌린지가 취소되었어요.".to_owned(),
            },
        ),
        "proof_reminder" => (
            "오늘 인증을 잊지 마세요".to_owned(),
            "인증 시간이 곧 끝나요. 지금 인증하고 참가비를 지키세요.".to_owned(),
        ),
        "shop_order_canceled" => (
            "주문 취소".to_owned(),
            match (name(payload, "product_name"), points(payload, "amount")) {
                (Some(product), Some(amount)) if amount != "0" => {
                    format!("{product} 주문이 취소되어 {amount}P를 돌려드렸어요.")
                }
                (Some(product), _) => format!("{product} 주문이 취소되었어요."),
                _ => "주문이 취소되었어요.".to_owned(),
            },
        ),
        "settlement_result" => (
            "챌린지 정산 완료".to_owned(),
            match (points(payload, "refund"), points(payload, "prize")) {
                (Some(refund), Some(prize)) if prize != "0" => {
                    format!("{refund}P를 돌려드리고 상금 {prize}P를 더했어요.")
                }
                (Some(refund), _) => format!("{refund}P를 돌려드렸어요."),
                _ => "정산이 끝났어요. 앱에서 확인해 보세요.".to_owned(),
            },
        ),
        _ => (
            "NeNe Challenge".to_owned(),
            "새 알림이 있어요. 앱에서 확인해 보세요.".to_owned(),
        ),
    };
    Rendered {
        title,
        body: cut(&body, BODY_CHARS_MAX),
    }
}

/// One notification as the dispatcher sends it.
#[derive(Debug, Clone, Copy)]
pub struct Outgoing<'a> {
    /// The notification's id (UUID text): the client's deduplication key.
    pub id: &'a str,
    pub kind: &'a str,
    pub payload: &'a Value,
    pub rendered: &'a Rendered,
}

/// The FCM HTTP v1 `message` for one device: a `token` target, the common `notification`, a
/// `data` map of strings (`notification_id`, `kind`, `payload` as JSON text) and the platform's
/// block. Android: high priority on our channel, tagged with the id; iOS: an alert at priority 10
/// collapsed by the id; web: a notification tagged with the id, urgency high. The message is kept
/// under [`FCM_MESSAGE_BYTES_MAX`] by dropping `data.payload` (the app can fetch the notification
/// by its id); with a device token of FCM's length (about 160 characters) no title or body of
/// ours can then exceed the limit. A token that does is FCM's to refuse (`INVALID_ARGUMENT`).
#[must_use]
pub fn fcm_message(platform: DevicePlatform, token: &str, outgoing: &Outgoing<'_>) -> Value {
    let mut message = build(platform, token, outgoing);
    if encoded_len(&message) > FCM_MESSAGE_BYTES_MAX
        && let Some(data) = message["data"].as_object_mut()
    {
        data.remove("payload");
    }
    message
}

/// The message, whatever its size.
fn build(platform: DevicePlatform, token: &str, outgoing: &Outgoing<'_>) -> Value {
    let Rendered { title, body } = outgoing.rendered;
    let mut data = Map::new();
    data.insert("notification_id".to_owned(), outgoing.id.into());
    data.insert("kind".to_owned(), outgoing.kind.into());
    data.insert("payload".to_owned(), outgoing.payload.to_string().into());
    let mut message = json!({
        "token": token,
        "notification": { "title": title, "body": body },
        "data": data,
    });
    let (field, block) = match platform {
        DevicePlatform::Android => (
            "android",
            json!({
                "priority": "high",
                "notification": { "channel_id": ANDROID_CHANNEL_ID, "tag": outgoing.id },
            }),
        ),
        DevicePlatform::Ios => (
            "apns",
            json!({
                "headers": {
                    "apns-priority": "10",
                    "apns-push-type": "alert",
                    "apns-collapse-id": outgoing.id,
                },
                "payload": {
                    "aps": { "alert": { "title": title, "body": body }, "sound": "default" },
                },
            }),
        ),
        DevicePlatform::Web => (
            "webpush",
            json!({
                "headers": { "Urgency": "high" },
                "notification": { "title": title, "body": body, "tag": outgoing.id },
            }),
        ),
    };
    message[field] = block;
    message
}

fn encoded_len(value: &Value) -> usize {
    serde_json::to_vec(value).map_or(usize::MAX, |bytes| bytes.len())
}

/// `{"message": …}` around the message.
const REQUEST_WRAPPER_BYTES: usize = r#"{"message":}"#.len();

/// The `messages:send` body `{"message": …}` for one device: [`fcm_message`] encoded once (the
/// dispatcher's hot path; the size is checked on the encoding rather than by encoding twice).
///
/// # Errors
/// The message cannot be encoded (it can: every value is a string or an object of them).
pub fn send_body(
    platform: DevicePlatform,
    token: &str,
    outgoing: &Outgoing<'_>,
) -> Result<bytes::Bytes, serde_json::Error> {
    #[derive(serde::Serialize)]
    struct Request<'a> {
        message: &'a Value,
    }
    let encode = |message: &Value| serde_json::to_vec(&Request { message });
    let mut message = build(platform, token, outgoing);
    let mut body = encode(&message)?;
    if body.len() > FCM_MESSAGE_BYTES_MAX + REQUEST_WRAPPER_BYTES
        && let Some(data) = message["data"].as_object_mut()
    {
        data.remove("payload");
        body = encode(&message)?;
    }
    Ok(body.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0190f5a2-7c1e-7a4b-9c3d-1e2f3a4b5c6d";

    fn outgoing<'a>(payload: &'a Value, rendered: &'a Rendered) -> Outgoing<'a> {
        Outgoing {
            id: ID,
            kind: "points_credited",
            payload,
            rendered,
        }
    }

    #[test]
    fn a_settlement_says_what_came_back_and_a_reminder_says_to_prove() {
        let prize = render(
            "settlement_result",
            &json!({ "refund": 10_000, "prize": 3_858 }),
        );
        assert_eq!(prize.body, "10,000P를 돌려드리고 상금 3,858P를 더했어요.");
        let refund = render("settlement_result", &json!({ "refund": 5_714, "prize": 0 }));
        assert_eq!(refund.body, "5,714P를 돌려드렸어요.");
        assert!(render("proof_reminder", &json!({})).title.contains("인증"));
    }

    #[test]
    fn a_credit_reads_its_points_grouped_by_thousands() {
        let rendered = render("points_credited", &json!({ "points": 1_234_567 }));
        assert_eq!(rendered.title, "포인트 충전 완료");
        assert_eq!(rendered.body, "1,234,567P가 충전되었어요.");
        assert_eq!(
            render("refund_done", &json!({ "amount": 900 })).body,
            "900원이 환불되었어요."
        );
    }

    #[test]
    fn an_unknown_kind_or_a_payload_without_its_fields_still_reads_as_a_sentence() {
        assert_eq!(
            render("proof_reminder_v9", &json!(null)).title,
            "NeNe Challenge"
        );
        assert_eq!(
            render("points_credited", &json!({ "points": "many" })).body,
            "포인트가 충전되었어요."
        );
    }

    #[test]
    fn a_long_challenge_title_is_cut_so_the_body_stays_bounded() {
        let title = "가".repeat(500);
        let rendered = render(
            "challenge_canceled",
            &json!({ "challenge_title": title, "refund": 10_000 }),
        );
        assert!(rendered.body.chars().count() <= BODY_CHARS_MAX);
        assert!(rendered.body.contains('…'));
    }

    #[test]
    fn android_messages_are_high_priority_on_our_channel_and_tagged_with_the_id() {
        let payload = json!({ "points": 10 });
        let rendered = render("points_credited", &payload);
        let message = fcm_message(
            DevicePlatform::Android,
            "tok-a",
            &outgoing(&payload, &rendered),
        );
        assert_eq!(message["token"], "tok-a");
        assert_eq!(message["android"]["priority"], "high");
        assert_eq!(
            message["android"]["notification"]["channel_id"],
            ANDROID_CHANNEL_ID
        );
        assert_eq!(message["android"]["notification"]["tag"], ID);
        assert!(message.get("apns").is_none() && message.get("webpush").is_none());
    }

    #[test]
    fn ios_messages_carry_an_alert_at_priority_ten_collapsed_by_the_id() {
        let payload = json!({ "points": 10 });
        let rendered = render("points_credited", &payload);
        let message = fcm_message(DevicePlatform::Ios, "tok-i", &outgoing(&payload, &rendered));
        assert_eq!(message["apns"]["headers"]["apns-priority"], "10");
        assert_eq!(message["apns"]["headers"]["apns-collapse-id"], ID);
        assert_eq!(
            message["apns"]["payload"]["aps"]["alert"]["body"],
            "10P가 충전되었어요."
        );
    }

    #[test]
    fn web_messages_carry_a_webpush_notification_tagged_with_the_id() {
        let payload = json!({ "points": 10 });
        let rendered = render("points_credited", &payload);
        let message = fcm_message(DevicePlatform::Web, "tok-w", &outgoing(&payload, &rendered));
        assert_eq!(message["webpush"]["notification"]["tag"], ID);
        assert_eq!(
            message["webpush"]["notification"]["title"],
            "포인트 충전 완료"
        );
    }

    #[test]
    fn data_holds_only_strings_with_the_notification_id() {
        let payload = json!({ "points": 10, "nested": { "a": [1, 2] } });
        let rendered = render("points_credited", &payload);
        let message = fcm_message(DevicePlatform::Android, "t", &outgoing(&payload, &rendered));
        let data = message["data"].as_object().cloned().unwrap_or_default();
        assert!(data.values().all(Value::is_string));
        assert_eq!(data["notification_id"], ID);
        let decoded: Value =
            serde_json::from_str(data["payload"].as_str().unwrap_or_default()).unwrap_or_default();
        assert_eq!(decoded, payload);
    }

    #[test]
    fn the_send_body_wraps_the_same_message_and_fits_the_limit_too() {
        let small = json!({ "points": 10 });
        let large = json!({ "blob": "x".repeat(10_000) });
        for payload in [small, large] {
            let rendered = render("points_credited", &payload);
            let outgoing = outgoing(&payload, &rendered);
            let body = send_body(DevicePlatform::Ios, "t", &outgoing).unwrap_or_default();
            let decoded: Value = serde_json::from_slice(&body).unwrap_or_default();
            assert_eq!(
                decoded["message"],
                fcm_message(DevicePlatform::Ios, "t", &outgoing)
            );
            assert!(body.len() <= FCM_MESSAGE_BYTES_MAX + REQUEST_WRAPPER_BYTES);
        }
    }

    #[test]
    fn a_payload_too_large_for_fcm_is_left_out_of_data_and_the_message_fits() {
        let payload = json!({ "blob": "x".repeat(10_000) });
        let rendered = render("points_credited", &payload);
        for platform in [
            DevicePlatform::Android,
            DevicePlatform::Ios,
            DevicePlatform::Web,
        ] {
            let message = fcm_message(platform, &"t".repeat(300), &outgoing(&payload, &rendered));
            assert!(
                encoded_len(&message) <= FCM_MESSAGE_BYTES_MAX,
                "{platform:?}"
            );
            assert!(message["data"].get("payload").is_none());
            assert_eq!(message["data"]["notification_id"], ID);
        }
    }
}
