//! Calls through Twilio ConversationRelay.
//!
//! - `POST /api/voice/inbound`: Twilio's voice webhook (signed like the SMS
//!   webhook, routed by `To`) answers TwiML connecting the call to the relay,
//!   with the business's greeting.
//! - `GET /api/voice/relay`: the relay's WebSocket, its handshake signed
//!   over the relay URL; each of the caller's utterances is one call turn
//!   (`jobs::call`), run in order by one task per call, so a socket that
//!   drops mid-turn still commits the turn.
//! - `POST /api/voice/after`: where Twilio goes when the relay ends (with
//!   our `handoffData`) or a transfer ends (`DialCallStatus`): dial the
//!   owner, take a message, or hang up.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{OriginalUri, State};
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::sync::mpsc;

use super::AppState;
use super::error::ApiError;
use super::verify::verified_form;
use crate::channel::voice::{self, CallMode, RelayIn};
use crate::domain::phone::E164;
use crate::jobs::call::{self, Barge, CallInfo, Speaker, Speech, TurnEnd};
use crate::twilio::signature;

fn twiml(body: String) -> Response {
    (StatusCode::OK, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

fn after_url(state: &AppState) -> String {
    format!("{}{}", state.public_base_url, voice::AFTER_PATH)
}

fn connect(state: &AppState, greeting: &str, mode: CallMode) -> Response {
    twiml(voice::connect_twiml(
        &after_url(state),
        &voice::relay_url(&state.public_base_url),
        greeting,
        mode,
    ))
}

#[tracing::instrument(name = "voice_inbound", skip_all)]
pub async fn inbound(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = verified_form(&state, &uri, &headers, &body)?;
    let to = param(&params, "To")
        .and_then(|t| E164::parse(t).ok())
        .ok_or_else(|| ApiError::BadRequest("`To` is not a phone number".into()))?;
    let Some(business) = state.businesses.current().route(to.as_str()).cloned() else {
        tracing::warn!(to = ?to, "a call to a number no business claims; rejected");
        return Ok(twiml(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Response><Reject/></Response>".into(),
        ));
    };
    let open = voice::open_at(&business, state.calls.clock.now());
    tracing::info!(business = %business.business.id, open, "call answered");
    Ok(connect(
        &state,
        &voice::greeting(&business, open),
        CallMode::Assistant,
    ))
}

#[tracing::instrument(name = "voice_after", skip_all)]
pub async fn after(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let params = verified_form(&state, &uri, &headers, &body)?;
    let business = param(&params, "To")
        .and_then(|t| E164::parse(t).ok())
        .and_then(|to| state.businesses.current().route(to.as_str()).cloned());
    let Some(business) = business else {
        return Ok(twiml(voice::hangup_twiml()));
    };
    if let Some(status) = param(&params, "DialCallStatus") {
        // The transfer ended: talked, or nobody answered (a message).
        tracing::info!(status, "transfer to the owner ended");
        return Ok(if status == "completed" {
            twiml(voice::hangup_twiml())
        } else {
            connect(&state, &voice::message_greeting(&business), CallMode::Message)
        });
    }
    let handoff: Value = param(&params, "HandoffData")
        .and_then(|h| serde_json::from_str(h).ok())
        .unwrap_or(Value::Null);
    match handoff["reason"].as_str() {
        Some("transfer") => {
            let open = voice::open_at(&business, state.calls.clock.now());
            match (&business.business.owner_phone, open) {
                (Some(owner), true) => Ok(twiml(voice::dial_twiml(owner.as_str(), &after_url(&state), None))),
                _ => Ok(connect(
                    &state,
                    &voice::message_greeting(&business),
                    CallMode::Message,
                )),
            }
        }
        _ => Ok(twiml(voice::hangup_twiml())),
    }
}

/// The relay's handshake: `X-Twilio-Signature` over the relay URL (and the
/// query, if any), with no parameters; otherwise 403.
#[tracing::instrument(name = "voice_relay", skip_all)]
pub async fn relay(
    State(state): State<AppState>,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, ApiError> {
    verify_handshake(&state, &uri, &headers)?;
    Ok(ws.on_upgrade(move |socket| session(state, socket)))
}

fn verify_handshake(state: &AppState, uri: &Uri, headers: &HeaderMap) -> Result<(), ApiError> {
    if state.skip_signature_validation {
        return Ok(());
    }
    let Some(token) = &state.twilio_auth_token else {
        return Err(ApiError::Forbidden("signature cannot be verified"));
    };
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .ok_or(ApiError::Forbidden("missing X-Twilio-Signature"))?;
    let mut url = voice::relay_url(&state.public_base_url);
    if let Some(query) = uri.query() {
        url.push('?');
        url.push_str(query);
    }
    if signature::verify(secrecy::ExposeSecret::expose_secret(token), &url, &[], signature) {
        Ok(())
    } else {
        Err(ApiError::Forbidden("X-Twilio-Signature does not match"))
    }
}

/// A caller's utterance, queued for the call's turn task.
struct Prompt {
    n: u32,
    text: String,
    barge: Arc<Barge>,
}

async fn session(state: AppState, socket: WebSocket) {
    let (mut sink, mut incoming) = socket.split();
    let (speech, mut to_send) = mpsc::unbounded_channel::<Speech>();
    let writer = tokio::spawn(async move {
        while let Some(s) = to_send.recv().await {
            let (text, ends) = match s {
                Speech::Text { token, last } => (voice::text_message(&token, last), false),
                Speech::End(handoff) => (voice::end_message(&handoff), true),
            };
            if sink.send(Message::Text(text.into())).await.is_err() {
                break;
            }
            if ends {
                break;
            }
        }
    });
    let mut prompts: Option<mpsc::UnboundedSender<Prompt>> = None;
    let mut turns = None;
    let mut heard_so_far = String::new();
    let mut n = 0u32;
    let mut barge = Arc::new(Barge::default());
    while let Some(frame) = incoming.next().await {
        let raw = match frame {
            Ok(Message::Text(t)) => t.to_string(),
            Ok(Message::Close(_)) | Err(_) => break,
            Ok(_) => continue,
        };
        let message = match RelayIn::parse(&raw) {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "a relay message not understood; ignored");
                continue;
            }
        };
        match message {
            RelayIn::Setup {
                session_id,
                call_sid,
                from,
                to,
                custom,
            } => {
                if prompts.is_some() {
                    tracing::warn!("a second setup on one relay session; ignored");
                    continue;
                }
                match start_call(&state, &session_id, &call_sid, &from, &to, &custom).await {
                    Ok((info, engine)) => {
                        let (queue, queued) = mpsc::unbounded_channel();
                        prompts = Some(queue);
                        turns = Some(tokio::spawn(run_call(
                            state.clone(),
                            info,
                            engine,
                            queued,
                            Speaker::new(speech.clone()),
                        )));
                    }
                    Err(reason) => {
                        tracing::warn!(%reason, "a call that cannot be answered; ended");
                        let _ = speech.send(Speech::End(serde_json::json!({"reason": "unroutable"})));
                        break;
                    }
                }
            }
            RelayIn::Prompt { text, last } => {
                let Some(queue) = &prompts else {
                    tracing::warn!("a prompt before setup; ignored");
                    continue;
                };
                if !heard_so_far.is_empty() {
                    heard_so_far.push(' ');
                }
                heard_so_far.push_str(text.trim());
                if !last {
                    continue;
                }
                n += 1;
                barge = Arc::new(Barge::default());
                let _ = queue.send(Prompt {
                    n,
                    text: std::mem::take(&mut heard_so_far),
                    barge: barge.clone(),
                });
            }
            RelayIn::Interrupt {
                utterance,
                duration_ms,
            } => {
                tracing::info!(duration_ms, "the caller interrupted");
                if let Some(id) = barge.interrupt(&utterance)
                    && let Err(e) = state.store.cut_spoken_reply(id, &utterance).await
                {
                    tracing::error!(error = %e, "could not cut the interrupted reply");
                }
            }
            RelayIn::Dtmf { digit } => {
                tracing::info!(%digit, "the caller pressed a key");
                // "0" asks for a person: a turn of its own, in order with
                // the caller's words (other digits mean nothing yet).
                if let (Some(words), Some(queue)) = (voice::dtmf_words(&digit), &prompts) {
                    heard_so_far.clear();
                    n += 1;
                    barge = Arc::new(Barge::default());
                    let _ = queue.send(Prompt {
                        n,
                        text: words.to_string(),
                        barge: barge.clone(),
                    });
                }
            }
            RelayIn::Error { description } => {
                tracing::warn!(%description, "ConversationRelay reported an error")
            }
        }
    }
    // The caller hung up or the socket dropped: the turns already queued
    // still run to their commit.
    drop(prompts);
    drop(speech);
    if let Some(turns) = turns {
        let _ = turns.await;
    }
    let _ = writer.await;
}

/// Routes the call by the number called, and finds (or makes) the
/// caller's conversation with it: the same one their texts are in.
async fn start_call(
    state: &AppState,
    session_id: &str,
    call_sid: &str,
    from: &str,
    to: &str,
    custom: &serde_json::Map<String, Value>,
) -> Result<(CallInfo, Arc<crate::jobs::turns::Engine>), String> {
    let caller =
        E164::parse(from).map_err(|_| "the caller's number is withheld or unreadable".to_string())?;
    let called = E164::parse(to).map_err(|_| "the called number is unreadable".to_string())?;
    let business = state
        .businesses
        .current()
        .route(called.as_str())
        .cloned()
        .ok_or("no business answers the number called")?;
    let engine = state
        .desks
        .engine(&business.business.id)
        .ok_or("the business has no engine")?;
    // A conversation is the customer's number and the business's number:
    // made on first contact, here as for a first text.
    let conversation = state
        .store
        .owner_conversation(&business.business.id, &caller, &called)
        .await
        .map_err(|e| e.to_string())?;
    tracing::info!(conversation = conversation.0, caller = %caller.masked(), "call connected to the relay");
    Ok((
        CallInfo {
            call_sid: call_sid.to_string(),
            session_id: if session_id.is_empty() {
                uuid::Uuid::new_v4().simple().to_string()
            } else {
                session_id.to_string()
            },
            business_id: business.business.id.clone(),
            conversation,
            caller,
            called,
            mode: CallMode::parse(custom.get("mode").and_then(Value::as_str)),
        },
        engine,
    ))
}

/// The call's turns, one at a time, in the order the caller spoke.
async fn run_call(
    state: AppState,
    mut info: CallInfo,
    engine: Arc<crate::jobs::turns::Engine>,
    mut prompts: mpsc::UnboundedReceiver<Prompt>,
    mut speaker: Speaker,
) {
    // The conversation's lease, taken now (while the caller hears the
    // greeting) and renewed every third of a lease until the call ends.
    let calls = &state.calls;
    let mut lease = call::CallLease::default();
    if let Err(e) = lease.take(calls, &info).await {
        tracing::warn!(error = %e, "could not take the call's lease yet; the first turn will");
    }
    let renew_every = (calls.lease / 3).max(std::time::Duration::from_millis(100));
    loop {
        let prompt = tokio::select! {
            prompt = prompts.recv() => match prompt {
                Some(prompt) => prompt,
                None => break,
            },
            _ = tokio::time::sleep(renew_every) => {
                if let Err(e) = lease.take(calls, &info).await {
                    tracing::warn!(error = %e, "could not renew the call's lease");
                }
                continue;
            }
        };
        // A reload between turns serves the next turn, as for texts.
        let engine = state
            .desks
            .engine(&info.business_id)
            .unwrap_or_else(|| engine.clone());
        match call::run_turn(
            &state.calls,
            &engine,
            &info,
            &mut lease,
            prompt.n,
            &prompt.text,
            &mut speaker,
            &prompt.barge,
        )
        .await
        {
            Ok(TurnEnd::Continue) => {}
            Ok(TurnEnd::TakeMessage) => info.mode = CallMode::Message,
            Ok(TurnEnd::End(_)) => break,
            Err(e) => {
                tracing::error!(error = %e, "a call turn failed");
                speaker.apologise_and_retry();
            }
        }
    }
    lease.release(calls, &info).await;
}
