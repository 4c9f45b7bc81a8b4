// The reply counter: characters, encoding and texts (segments) as the
// customer's phone bill counts them, kept current while the owner types.
// It mirrors src/domain/sms_text.rs (normalize_gsm7, segment_info); the
// server renders the same count, so the page says it with JavaScript off.
(function () {
  "use strict";
  var BASIC = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà";
  var EXTENDED = "^{}\\[~]|€\u000C";
  var REWRITES = [
    [/[\u2018\u2019\u201A\u201B\u2032\u00B4\u0060]/g, "'"],
    [/[\u201C\u201D\u201E\u201F\u2033\u00AB\u00BB]/g, '"'],
    [/[\u2010\u2011\u2012\u2013\u2014\u2015\u2212]/g, "-"],
    [/\u2026/g, "..."],
    [/[\u00A0\u2000-\u200A\u202F\u205F\u3000\t]/g, " "],
    [/[\u200B\u200C\u200D\u2060\uFEFF\u00AD]/g, ""],
    [/[\u2022\u00B7]/g, "*"],
    [/\u2122/g, "(TM)"],
    [/\u00A9/g, "(c)"],
    [/\u00AE/g, "(R)"],
    [/\u00BD/g, "1/2"],
    [/\u00BC/g, "1/4"],
    [/\u00BE/g, "3/4"],
    [/\u00D7/g, "x"],
    [/\u2192/g, "->"],
    [/\u00E1/g, "a"],
    [/\u00ED/g, "i"],
    [/\u00F3/g, "o"],
    [/\u00FA/g, "u"],
    [/\u00E7/g, "c"],
    [/[\u00EA\u00EB]/g, "e"],
    [/\r/g, ""]
  ];

  function normalize(text) {
    for (var i = 0; i < REWRITES.length; i++) {
      text = text.replace(REWRITES[i][0], REWRITES[i][1]);
    }
    return text;
  }

  function count(text) {
    var normalized = normalize(text);
    var chars = Array.from(normalized);
    var septets = 0;
    var gsm = true;
    for (var i = 0; i < chars.length; i++) {
      if (BASIC.indexOf(chars[i]) >= 0) {
        septets += 1;
      } else if (EXTENDED.indexOf(chars[i]) >= 0) {
        septets += 2;
      } else {
        gsm = false;
        break;
      }
    }
    var segments;
    if (gsm) {
      segments = septets <= 160 ? 1 : Math.ceil(septets / 153);
    } else {
      var units = normalized.length; // UTF-16 code units
      segments = units <= 70 ? 1 : Math.ceil(units / 67);
    }
    var n = chars.length;
    return n + " character" + (n === 1 ? "" : "s") + " · " + (gsm ? "GSM-7" : "Unicode") +
      " · " + segments + " text" + (segments === 1 ? "" : "s");
  }

  var body = document.getElementById("reply-body");
  var counter = document.getElementById("reply-counter");
  if (!body || !counter) {
    return;
  }
  body.addEventListener("input", function () {
    counter.textContent = count(body.value);
  });
}());
