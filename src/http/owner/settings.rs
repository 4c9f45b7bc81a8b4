//! The assistant's settings, per business: tone, reply length, greeting,
//! the owner's rules and current info, when to hand off, and a full
//! override of the base prompt. The page stores only what differs from
//! `business.toml` (fragments, `config::fragments`), validates a draft by
//! the file's own rules, shows the system prompt the draft assembles, and
//! rehearses a sample text on the draft ("Try it") without sending or
//! booking anything.

use std::sync::Arc;

use axum::Form;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;
use tower_sessions::Session;

use super::pages::{business_or_first, internal, nav};
use super::views::{self, Nav};
use crate::assistant::prompt::{self, Origin};
use crate::config::business::{BusinessConfig, ReplyLength, Tone};
use crate::config::fragments::{self, CONSOLE_EDITOR, Fragment, FragmentError};
use crate::domain::conversation::ConversationState;
use crate::http::AppState;

/// The longest text a field takes: far beyond any sensible prompt
/// fragment, well inside a model request.
const MAX_FIELD_CHARS: usize = 8_000;
/// The longest sample text "Try it" answers.
const MAX_SAMPLE_CHARS: usize = 1_600;

#[derive(Deserialize, Default)]
pub(super) struct SettingsParams {
    business: Option<String>,
    saved: Option<String>,
    /// Set by the page's script: answer with the assembled prompt alone.
    fragment: Option<String>,
}

/// The page's form: a draft of every setting, as typed.
#[derive(Deserialize, Default, Clone)]
pub(super) struct SettingsForm {
    #[serde(default)]
    business: String,
    tone: Option<String>,
    reply_length: Option<String>,
    #[serde(default)]
    greeting: String,
    #[serde(default)]
    additional_rules: String,
    #[serde(default)]
    current_info: String,
    #[serde(default)]
    handoff_rules: String,
    #[serde(default)]
    base_prompt: String,
    /// The policy as text (`off`, `quotes`, `over:500`, `all`): what the
    /// page's choice below comes to, and what a script may post directly.
    #[serde(default)]
    approval: String,
    /// The page's choice of policy: off, quotes, over or all.
    approval_mode: Option<String>,
    /// The amount for `over`.
    #[serde(default)]
    approval_over: String,
    #[serde(default)]
    approval_timeout_minutes: String,
    #[serde(default)]
    approval_holding_text: String,
    #[serde(default)]
    sample: String,
}

impl SettingsForm {
    /// The form with `approval` read from the page's choice, when it made
    /// one.
    fn with_approval_choice(mut self) -> Self {
        if let Some(mode) = self.approval_mode.as_deref().map(str::trim) {
            self.approval = match mode {
                "over" => format!("over:{}", self.approval_over.trim().trim_start_matches('$')),
                other => other.to_string(),
            };
        }
        self
    }
}

/// The approval choices of the page: (value, title, what it does).
const APPROVAL_CHOICES: [(&str, &str, &str); 4] = [
    (
        "off",
        "Off",
        "Every reply goes out as drafted (after the price and fact checks).",
    ),
    (
        "quotes",
        "New prices",
        "A reply that states a price the customer was not sent yet waits for you.",
    ),
    (
        "over",
        "Prices over an amount",
        "A reply with a new price above the amount waits for you.",
    ),
    (
        "all",
        "Every reply",
        "Every reply of the assistant waits for you.",
    ),
];

/// The approval choice as the page shows it.
pub struct ApprovalChoice {
    pub value: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub checked: bool,
    pub saved: bool,
}

/// The page's approval choices for the draft `approval` text and the
/// saved one; and the `over` amount to show.
fn approval_choices(draft: &str, saved: &str) -> (Vec<ApprovalChoice>, String) {
    let mode = |text: &str| -> &'static str {
        let text = text.trim();
        match text {
            _ if text.starts_with("over") => "over",
            "quotes" => "quotes",
            "all" => "all",
            _ => "off",
        }
    };
    let (draft_mode, saved_mode) = (mode(draft), mode(saved));
    let amount = draft
        .trim()
        .strip_prefix("over:")
        .map(str::trim)
        .unwrap_or_default()
        .to_string();
    let choices = APPROVAL_CHOICES
        .iter()
        .map(|(value, title, description)| ApprovalChoice {
            value,
            title,
            description,
            checked: *value == draft_mode,
            saved: *value == saved_mode,
        })
        .collect();
    (choices, amount)
}

/// A field of the page and its label, for errors in plain words.
const FIELDS: [(&str, &str); 10] = [
    ("tone", "Tone"),
    ("reply_length", "Reply length"),
    ("greeting", "Greeting"),
    ("additional_rules", "Additional rules"),
    ("current_info", "Current info"),
    ("handoff_rules", "When to hand off"),
    ("base_prompt", "Base prompt override"),
    ("approval", "Approval before sending"),
    ("approval_timeout_minutes", "Approval timeout (minutes)"),
    ("approval_holding_text", "Holding text"),
];

fn label_of(key: &str) -> String {
    FIELDS
        .iter()
        .find(|(k, _)| *k == key)
        .map_or_else(|| key.to_string(), |(_, label)| label.to_string())
}

/// A tone or reply length as a card.
pub struct Card {
    pub value: &'static str,
    pub title: &'static str,
    pub description: &'static str,
    pub checked: bool,
    pub saved: bool,
}

pub struct SectionView {
    pub title: &'static str,
    pub origin: &'static str,
    /// CSS class: `built-in`, `file` or `console`.
    pub class: &'static str,
    pub source: String,
    pub text: String,
    pub chars: usize,
}

/// The assembled system prompt, or why the draft has none.
#[derive(askama::Template)]
#[template(path = "owner/settings_prompt.html")]
pub struct PromptView {
    pub sections: Vec<SectionView>,
    pub total_chars: usize,
    pub error: Option<String>,
}

pub struct TryView {
    pub sample: String,
    pub replies: Vec<String>,
    pub state: String,
    pub error: Option<String>,
}

/// A text field: the draft, what is saved, and where the file stands.
pub struct TextField {
    pub name: &'static str,
    pub label: &'static str,
    pub value: String,
    pub saved: String,
    pub chars: usize,
    pub error: Option<String>,
}

#[derive(askama::Template)]
#[template(path = "owner/settings.html")]
pub struct SettingsPage {
    pub nav: Nav,
    pub business_id: String,
    pub business_name: String,
    pub saved_notice: bool,
    pub error: Option<String>,
    pub error_field: String,
    pub unsaved: usize,
    pub tones: Vec<Card>,
    pub lengths: Vec<Card>,
    pub greeting: TextField,
    pub greeting_default: String,
    pub lists: Vec<(TextField, Vec<String>, &'static str)>,
    pub base_prompt: TextField,
    pub base_overridden: bool,
    pub built_in_base: String,
    pub approval: TextField,
    pub approval_choices: Vec<ApprovalChoice>,
    pub approval_over: String,
    pub approval_timeout: TextField,
    pub approval_holding_text: TextField,
    pub prompt: PromptView,
    pub try_it: Option<TryView>,
}

/// The business's configuration as its file alone says (no console).
fn file_only(state: &AppState, current: &BusinessConfig) -> Result<BusinessConfig, FragmentError> {
    let path = state
        .businesses
        .current()
        .path_of(&current.business.id)
        .map(std::path::Path::to_path_buf)
        .unwrap_or_default();
    fragments::apply(current, &path, &[])
}

/// An `[assistant]` value of the file, as the console's text shows it
/// (any key, including ones this page has no code for).
fn file_value(config: &BusinessConfig, key: &str) -> String {
    let Some(text) = &config.file_text else {
        return String::new();
    };
    let Ok(table) = text.parse::<toml::Table>() else {
        return String::new();
    };
    match table.get("assistant").and_then(|a| a.get(key)) {
        Some(toml::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

/// The console's own value for `key`, as its field shows it.
fn console_text(config: &BusinessConfig, key: &str) -> Option<String> {
    let fragment = config.console.get(key)?;
    match fragments::parse_value(key, &fragment.value).ok()? {
        toml::Value::String(s) => Some(s),
        toml::Value::Array(items) => Some(
            items
                .iter()
                .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_string))
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        other => Some(other.to_string()),
    }
}

fn lines(text: &str) -> Vec<String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

/// The form as it stands for the saved settings.
fn saved_form(current: &BusinessConfig, file: &BusinessConfig) -> SettingsForm {
    let a = &current.assistant;
    SettingsForm {
        business: current.business.id.clone(),
        tone: Some(a.tone.as_str().to_string()),
        reply_length: Some(a.reply_length.as_str().to_string()),
        greeting: a.greeting.clone().unwrap_or_default(),
        additional_rules: console_text(current, "additional_rules").unwrap_or_default(),
        current_info: console_text(current, "current_info").unwrap_or_default(),
        handoff_rules: console_text(current, "handoff_rules").unwrap_or_default(),
        base_prompt: a.base_prompt.clone().unwrap_or_default(),
        // What applies now, the file's default included: an empty field
        // told the owner nothing.
        approval: a.approval.to_string(),
        approval_mode: None,
        approval_over: String::new(),
        approval_timeout_minutes: console_text(current, "approval_timeout_minutes")
            .unwrap_or_else(|| file_value(file, "approval_timeout_minutes")),
        approval_holding_text: a.approval_holding_text.clone().unwrap_or_default(),
        sample: String::new(),
    }
}

/// What the draft changes from the file, as fragments: a value equal to
/// the file's (or empty) is no fragment. A fragment whose value is
/// unchanged keeps when and by whom it was saved.
fn draft_fragments(
    form: &SettingsForm,
    file: &BusinessConfig,
    current: &BusinessConfig,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Vec<Fragment>, FragmentError> {
    let mut out = Vec::new();
    let mut add = |key: &str, value: toml::Value| {
        let value = value.to_string();
        let fragment = match current.console.get(key) {
            Some(old) if old.value == value => old.clone(),
            _ => Fragment {
                key: key.to_string(),
                value,
                updated_at: now,
                updated_by: CONSOLE_EDITOR.to_string(),
            },
        };
        out.push(fragment);
    };
    let too_long = |key: &str, text: &str| {
        (text.chars().count() > MAX_FIELD_CHARS).then(|| FragmentError::Invalid {
            key: format!("assistant.{key}"),
            message: format!(
                "at most {MAX_FIELD_CHARS} characters, got {}",
                text.chars().count()
            ),
        })
    };
    let scalar = |raw: &str| raw.trim().to_string();
    let file_text = |key: &str| file_value(file, key);
    for (key, raw) in [
        ("tone", form.tone.clone().unwrap_or_default()),
        ("reply_length", form.reply_length.clone().unwrap_or_default()),
        ("greeting", form.greeting.clone()),
        ("base_prompt", form.base_prompt.clone()),
        ("approval", form.approval.clone()),
        ("approval_holding_text", form.approval_holding_text.clone()),
    ] {
        if let Some(e) = too_long(key, &raw) {
            return Err(e);
        }
        let value = scalar(&raw);
        let file_says = match key {
            "tone" => file.assistant.tone.as_str().to_string(),
            "reply_length" => file.assistant.reply_length.as_str().to_string(),
            "approval" => file.assistant.approval.to_string(),
            _ => file_text(key),
        };
        if !value.is_empty() && value != file_says {
            add(key, toml::Value::String(value));
        }
    }
    let minutes = scalar(&form.approval_timeout_minutes);
    if !minutes.is_empty() && minutes != file_text("approval_timeout_minutes") {
        // A number is a number to the file's rules; anything else is
        // passed as text, so the rules refuse it in their own words.
        match minutes.parse::<i64>() {
            Ok(n) => add("approval_timeout_minutes", toml::Value::Integer(n)),
            Err(_) => add("approval_timeout_minutes", toml::Value::String(minutes)),
        }
    }
    for (key, raw) in [
        ("additional_rules", &form.additional_rules),
        ("current_info", &form.current_info),
        ("handoff_rules", &form.handoff_rules),
    ] {
        if let Some(e) = too_long(key, raw) {
            return Err(e);
        }
        let items = lines(raw);
        if !items.is_empty() {
            add(
                key,
                toml::Value::Array(items.into_iter().map(toml::Value::String).collect()),
            );
        }
    }
    out.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(out)
}

fn tone_cards(draft: Option<&str>, saved: Tone) -> Vec<Card> {
    [
        (
            Tone::Friendly,
            "Friendly",
            "Warm, like a helpful neighbour who runs a good business.",
        ),
        (
            Tone::Professional,
            "Professional",
            "Courteous and to the point; no slang.",
        ),
        (
            Tone::Casual,
            "Casual",
            "Relaxed, the way people text; still respectful.",
        ),
    ]
    .into_iter()
    .map(|(tone, title, description)| Card {
        value: tone.as_str(),
        title,
        description,
        checked: draft.unwrap_or(saved.as_str()) == tone.as_str(),
        saved: saved == tone,
    })
    .collect()
}

fn length_cards(draft: Option<&str>, saved: ReplyLength) -> Vec<Card> {
    [
        (ReplyLength::Short, "Short", "Under 160 characters: one text."),
        (
            ReplyLength::Medium,
            "Medium",
            "Under 300 characters: about two texts.",
        ),
    ]
    .into_iter()
    .map(|(length, title, description)| Card {
        value: length.as_str(),
        title,
        description,
        checked: draft.unwrap_or(saved.as_str()) == length.as_str(),
        saved: saved == length,
    })
    .collect()
}

/// The system prompt of a new customer's first text, as the model would
/// receive it on `config`.
fn prompt_view(config: &BusinessConfig, now: chrono::DateTime<chrono::Utc>) -> PromptView {
    let assembled = prompt::for_request(config, &ConversationState::default(), true, now);
    let sections: Vec<SectionView> = assembled
        .sections
        .iter()
        .map(|s| SectionView {
            title: s.title,
            origin: s.origin.label(),
            class: match s.origin {
                Origin::BuiltIn => "built-in",
                Origin::File => "file",
                Origin::Console => "console",
            },
            source: s.source.clone(),
            text: s.text.clone(),
            chars: s.text.chars().count(),
        })
        .collect();
    PromptView {
        total_chars: assembled.text().chars().count(),
        sections,
        error: None,
    }
}

fn field_error(error: &FragmentError) -> (String, String) {
    let key = error.key().unwrap_or("").to_string();
    let text = match error.key() {
        Some(key) => format!("{}: {}", label_of(key), error.message()),
        None => error.to_string(),
    };
    (key, text)
}

/// Everything the page shows for `form` (a draft, or the saved settings).
struct Draft {
    config: Result<BusinessConfig, FragmentError>,
}

impl Draft {
    fn of(state: &AppState, current: &BusinessConfig, file: &BusinessConfig, form: &SettingsForm) -> Self {
        let now = state.owner.clock.now();
        let config = draft_fragments(form, file, current, now).and_then(|fragments| {
            match state.businesses.preview(&current.business.id, &fragments) {
                Some(result) => result,
                None => Err(FragmentError::NoFileText),
            }
        });
        Draft { config }
    }
}

struct PageInput<'a> {
    nav: Nav,
    current: &'a BusinessConfig,
    file: &'a BusinessConfig,
    form: &'a SettingsForm,
    saved_notice: bool,
    try_it: Option<TryView>,
}

fn page(state: &AppState, input: PageInput<'_>) -> (StatusCode, SettingsPage) {
    let PageInput {
        nav,
        current,
        file,
        form,
        saved_notice,
        try_it,
    } = input;
    let now = state.owner.clock.now();
    let saved = saved_form(current, file);
    let draft = Draft::of(state, current, file, form);
    let (error_field, error) = match &draft.config {
        Ok(_) => (String::new(), None),
        Err(e) => {
            let (field, text) = field_error(e);
            (field, Some(text))
        }
    };
    let field = |name: &'static str, label: &'static str, value: &str, saved: &str| TextField {
        name,
        label,
        value: value.to_string(),
        saved: saved.to_string(),
        chars: value.chars().count(),
        error: (error_field == name).then(|| error.clone()).flatten(),
    };
    let mut unsaved = 0;
    for (a, b) in [
        (&form.tone, &saved.tone),
        (&form.reply_length, &saved.reply_length),
    ] {
        if a.as_deref().unwrap_or_default() != b.as_deref().unwrap_or_default() {
            unsaved += 1;
        }
    }
    for (a, b) in [
        (&form.greeting, &saved.greeting),
        (&form.additional_rules, &saved.additional_rules),
        (&form.current_info, &saved.current_info),
        (&form.handoff_rules, &saved.handoff_rules),
        (&form.base_prompt, &saved.base_prompt),
        (&form.approval_timeout_minutes, &saved.approval_timeout_minutes),
        (&form.approval_holding_text, &saved.approval_holding_text),
    ] {
        if a.trim() != b.trim() {
            unsaved += 1;
        }
    }
    let list =
        |name: &'static str,
         label: &'static str,
         value: &str,
         saved: &str,
         from_file: &[String],
         hint: &'static str| { (field(name, label, value, saved), from_file.to_vec(), hint) };
    let fa = &file.assistant;
    let lists = vec![
        list(
            "additional_rules",
            "Additional rules",
            &form.additional_rules,
            &saved.additional_rules,
            &fa.additional_rules,
            "One rule a line, e.g. We do not take paint or chemicals.",
        ),
        list(
            "current_info",
            "Current info",
            &form.current_info,
            &saved.current_info,
            &fa.current_info,
            "Promotions and closures, one a line, e.g. Closed Dec 24-26.",
        ),
        list(
            "handoff_rules",
            "When to hand off",
            &form.handoff_rules,
            &saved.handoff_rules,
            &fa.handoff_rules,
            "When the assistant should pass the conversation to you, one a line, e.g. Commercial jobs.",
        ),
    ];
    // No approval in the draft: as saved.
    let approval_draft = Some(form.approval.trim())
        .filter(|a| !a.is_empty())
        .unwrap_or(&saved.approval);
    if approval_draft != saved.approval.trim() {
        unsaved += 1;
    }
    let (approval_choices, approval_over) = approval_choices(approval_draft, &saved.approval);
    let shown = draft.config.as_ref().unwrap_or(current);
    let mut prompt = prompt_view(shown, now);
    if let Some(e) = &error {
        prompt.error = Some(format!("{e}. Shown: the saved settings."));
    }
    let status = if error.is_some() {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    (
        status,
        SettingsPage {
            nav,
            business_id: current.business.id.clone(),
            business_name: current.business.name.clone(),
            saved_notice,
            error: error.clone(),
            error_field: error_field.clone(),
            unsaved,
            tones: tone_cards(form.tone.as_deref(), current.assistant.tone),
            lengths: length_cards(form.reply_length.as_deref(), current.assistant.reply_length),
            greeting: field("greeting", "Greeting", &form.greeting, &saved.greeting),
            greeting_default: format!("Hi! Thanks for texting {}.", current.business.name),
            lists,
            base_overridden: shown.assistant.base_prompt.is_some(),
            base_prompt: field(
                "base_prompt",
                "Base prompt override",
                &form.base_prompt,
                &saved.base_prompt,
            ),
            built_in_base: prompt::default_base(current),
            approval: field(
                "approval",
                "Approval before sending",
                &form.approval,
                &saved.approval,
            ),
            approval_choices,
            approval_over,
            approval_timeout: field(
                "approval_timeout_minutes",
                "Approval timeout (minutes)",
                &form.approval_timeout_minutes,
                &saved.approval_timeout_minutes,
            ),
            approval_holding_text: field(
                "approval_holding_text",
                "Holding text",
                &form.approval_holding_text,
                &saved.approval_holding_text,
            ),
            prompt,
            try_it,
        },
    )
}

/// The business the page is about, and its file-only configuration.
fn business_and_file(
    state: &AppState,
    id: Option<&str>,
) -> Result<(Arc<BusinessConfig>, BusinessConfig), Box<Response>> {
    let id = id.filter(|id| !id.is_empty());
    let current = match id {
        Some(id) => state.businesses.business(id),
        None => business_or_first(state, None),
    }
    .ok_or_else(|| {
        Box::new(views::error_page(
            StatusCode::NOT_FOUND,
            "There is no such business.",
        ))
    })?;
    let file = file_only(state, &current).map_err(|e| Box::new(internal(e)))?;
    Ok((current, file))
}

async fn nav_for(state: &AppState, session: &Session, business: &str) -> Result<Nav, Response> {
    // With several businesses, the switcher names the one the settings
    // are for (settings are never for "all businesses").
    let mut nav = nav(state, session, "settings", Some(business)).await?;
    nav.business = if nav.businesses.is_empty() {
        String::new()
    } else {
        business.to_string()
    };
    Ok(nav)
}

pub(super) async fn settings(
    State(state): State<AppState>,
    session: Session,
    Query(params): Query<SettingsParams>,
) -> Response {
    let (current, file) = match business_and_file(&state, params.business.as_deref()) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let nav = match nav_for(&state, &session, &current.business.id).await {
        Ok(nav) => nav,
        Err(response) => return response,
    };
    let form = saved_form(&current, &file);
    let (status, page) = page(
        &state,
        PageInput {
            nav,
            current: &current,
            file: &file,
            form: &form,
            saved_notice: params.saved.is_some(),
            try_it: None,
        },
    );
    views::render(status, &page)
}

/// Saves the draft when it is valid; otherwise the form comes back with
/// the error, naming the field.
pub(super) async fn save(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<SettingsForm>,
) -> Response {
    let form = form.with_approval_choice();
    let (current, file) = match business_and_file(&state, Some(&form.business)) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let now = state.owner.clock.now();
    let fragments = draft_fragments(&form, &file, &current, now);
    let valid = fragments.and_then(|f| {
        state
            .businesses
            .preview(&current.business.id, &f)
            .unwrap_or(Err(FragmentError::NoFileText))
            .map(|_| f)
    });
    let fragments = match valid {
        Ok(fragments) => fragments,
        Err(_) => return draft_page(&state, &session, &current, &file, &form, None).await,
    };
    if let Err(e) = state
        .store
        .replace_assistant_fragments(&current.business.id, &fragments)
        .await
    {
        return internal(e);
    }
    match state.businesses.install(&current.business.id, fragments) {
        Some(Ok(_)) => {
            tracing::info!(business = %current.business.id, "assistant settings saved from the console; the next turn uses them");
            Redirect::to(&format!(
                "/owner/settings?business={}&saved=1",
                form_urlencoded::byte_serialize(current.business.id.as_bytes()).collect::<String>()
            ))
            .into_response()
        }
        // The file changed under the draft (a reload between check and
        // install): the stored settings go back to those still serving,
        // and the form says why, as for any other refusal.
        Some(Err(_)) | None => {
            if let Err(e) = state
                .store
                .replace_assistant_fragments(&current.business.id, &current.console.fragments)
                .await
            {
                tracing::error!(error = %e, "console: could not restore the assistant settings after a refused save");
            }
            draft_page(&state, &session, &current, &file, &form, None).await
        }
    }
}

async fn draft_page(
    state: &AppState,
    session: &Session,
    current: &BusinessConfig,
    file: &BusinessConfig,
    form: &SettingsForm,
    try_it: Option<TryView>,
) -> Response {
    let nav = match nav_for(state, session, &current.business.id).await {
        Ok(nav) => nav,
        Err(response) => return response,
    };
    let (status, page) = page(
        state,
        PageInput {
            nav,
            current,
            file,
            form,
            saved_notice: false,
            try_it,
        },
    );
    views::render(status, &page)
}

/// The assembled prompt of a draft: the whole page, or with `?fragment=1`
/// (the page's script) just the prompt, to swap in.
pub(super) async fn preview(
    State(state): State<AppState>,
    session: Session,
    Query(params): Query<SettingsParams>,
    Form(form): Form<SettingsForm>,
) -> Response {
    let form = form.with_approval_choice();
    let (current, file) = match business_and_file(&state, Some(&form.business)) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    if params.fragment.is_none() {
        return draft_page(&state, &session, &current, &file, &form, None).await;
    }
    let now = state.owner.clock.now();
    let draft = Draft::of(&state, &current, &file, &form);
    let (status, view) = match &draft.config {
        Ok(config) => (StatusCode::OK, prompt_view(config, now)),
        Err(e) => {
            let mut view = prompt_view(&current, now);
            view.error = Some(format!("{}. Shown: the saved settings.", field_error(e).1));
            (StatusCode::BAD_REQUEST, view)
        }
    };
    match askama::Template::render(&view) {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => internal(e),
    }
}

/// "Try it": the sample text answered on the draft settings, in a scratch
/// conversation (`rehearsal`): nothing is sent and nothing is booked.
pub(super) async fn try_it(
    State(state): State<AppState>,
    session: Session,
    Form(form): Form<SettingsForm>,
) -> Response {
    let form = form.with_approval_choice();
    let (current, file) = match business_and_file(&state, Some(&form.business)) {
        Ok(found) => found,
        Err(response) => return *response,
    };
    let sample = form.sample.trim().to_string();
    let mut view = TryView {
        sample: sample.clone(),
        replies: Vec::new(),
        state: String::new(),
        error: None,
    };
    let draft = Draft::of(&state, &current, &file, &form);
    match (&draft.config, state.desks.rehearsals()) {
        _ if sample.is_empty() => view.error = Some("Type a customer's text to try.".into()),
        _ if sample.chars().count() > MAX_SAMPLE_CHARS => {
            view.error = Some(format!("A sample is at most {MAX_SAMPLE_CHARS} characters."))
        }
        (Err(_), _) => view.error = Some("Fix the settings above first: the draft is not valid.".into()),
        (Ok(_), None) => view.error = Some("Try it is not available in this setup.".into()),
        (Ok(config), Some(rehearsals)) => match rehearsals.run(config, &sample).await {
            Ok(rehearsal) => {
                view.replies = rehearsal.replies;
                view.state = rehearsal.state.to_string();
            }
            Err(e) => {
                tracing::error!(error = %e, "console: Try it failed");
                view.error = Some("The rehearsal failed; see the server log.".into());
            }
        },
    }
    let status_if_bad = view.error.is_some() && draft.config.is_ok();
    let response = draft_page(&state, &session, &current, &file, &form, Some(view)).await;
    if status_if_bad && response.status() == StatusCode::OK {
        let (mut parts, body) = response.into_parts();
        parts.status = StatusCode::BAD_REQUEST;
        return Response::from_parts(parts, body);
    }
    response
}

pub(super) async fn settings_js() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../../templates/owner/settings.js"),
    )
}

pub(super) async fn settings_css() -> impl IntoResponse {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../../templates/owner/settings.css"),
    )
}
