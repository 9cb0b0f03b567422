"""The words mail clients put around a quoted or forwarded mail, in the languages of real replies.

Each pattern here is matched against one line (or two or three lines a client wrapped, joined), never
against the whole text, and none nests a quantifier inside another: the time they take is linear in the
line, and the scanner bounds the line's length (see quote_scan)."""

from __future__ import annotations

import re

# The verb of an attribution line ("On … wrote:", "Am … schrieb …:", "Op … schreef …:"), by language.
_WROTE_WORDS = (
    r"wrote|writes|has written|sent",  # en ("sent" only with a date and an address, as every word)
    r"schrieb|schreibt|hat geschrieben",  # de
    r"a écrit|écrit",  # fr
    r"escribió|escribio|ha escrito",  # es
    r"escreveu|escrevera",  # pt
    r"ha scritto|scrisse",  # it
    r"schreef|heeft geschreven|het volgende geschreven",  # nl
    r"napisał\(a\)|napisała|napisał|pisze|napisali",  # pl
    r"kirjoitti",  # fi
    r"написал\(а\)|написала|написал|пишет",  # ru
    r"написав\(ла\)|написала|написав|пише",  # uk
    r"skrev|skriver",  # sv, da, no
    r"napsal\(a\)|napsala|napsal|napísal\(a\)|napísal",  # cs, sk
    r"írta|ezt írta",  # hu
    r"yazdı|şunu yazdı|yazmış",  # tr
    r"a scris",  # ro
    r"έγραψε",  # el
    r"写道|寫道|のメッセージ|が書きました|작성",  # zh, ja, ko
)
WROTE = re.compile(rf"(?:^|[\s,>)\]])(?:{'|'.join(_WROTE_WORDS)})\s*[:：]?\s*-*\s*$", re.IGNORECASE)
# CJK attributions need no colon: "2025年4月30日周三 15:19，张伟 <z@x> 写道："
CJK_WROTE = re.compile(r"(?:写道|寫道|のメッセージ|작성)\s*[:：]?\s*$")

# Gmail in languages without a verb: "ср, 30 апр. 2025 г. в 15:19, Иван <ivan@example.ru>:"
ADDRESS_END = re.compile(r"<[^<>\s]+@[^<>\s]+>\s*[:：]\s*$|\[mailto:[^\]\s]+\]\s*[:：]\s*$")
TIME_OR_YEAR = re.compile(r"\d{1,2}[:.]\d{2}|\b(?:19|20)\d{2}\b|\d{4}年")
YEAR = re.compile(r"\b(?:19|20)\d{2}\b|\d{4}年|\d{4}년|\d{1,2}[./]\d{1,2}[./]\d{2}\b")
ADDRESS = re.compile(r"@[\w-]+\.|&lt;|<\S+@")

# A line that starts an attribution the client wrapped onto the next line.
OPENER = re.compile(
    r"^(?:On|Am|Le|El|Il|Em|Op|W dniu|Dnia|Den|Dne|Dňa|På|Pe|ma|ti|ke|to|pe|la|su|Στις|В|У|\d|\w{2,3}\.?,)\b",
    re.IGNORECASE,
)

# "From:" and the other fields of the header block Outlook, Gmail's forward and many webmails put above
# the quoted mail. French puts a space before the colon; CJK clients use a full-width colon.
_FROM_KEYS = (
    r"From|Von|De|Da|Van|Od|Från|Fra|Frá|Lähettäjä|От|Від|Feladó|Kimden|Gönderen|Από|Expéditeur"
    r"|Remitente|Mittente|Afzender|Nadawca|Odesílatel|Avsändare|Afsender|Avsender|Kimden|Odosielateľ"
    r"|差出人|发件人|發件人|寄件者|寄件人|보낸 사람|보낸사람"
)
_OTHER_KEYS = (
    r"Sent|Date|To|Subject|Cc|Bcc|Reply-To|Gesendet|Datum|An|Betreff|Kopie|Envoyé|Envoyée|À|A|Objet"
    r"|Enviado|Enviada|Fecha|Para|Asunto|CC|Inviato|Data|Oggetto|Verzonden|Aan|Onderwerp|Wysłano"
    r"|Wysłane|Do|Temat|DW|Skickat|Till|Ämne|Kopia|Sendt|Til|Emne|Lähetetty|Päivämäärä|Vastaanottaja"
    r"|Aihe|Kopio|Отправлено|Дата|Кому|Тема|Копия|Надіслано|Тема|Elküldve|Dátum|Címzett|Tárgy|Másolat"
    r"|Gönderildi|Tarih|Kime|Konu|Bilgi|Odesláno|Komu|Předmět|Kopie|Assunto|Enviada em|Sendt|Organization"
    r"|Ημερομηνία|Προς|Θέμα|送信日時|宛先|件名|日期|发送时间|發送時間|时间|時間|收件人|收件者|主题|主題|主旨"
    r"|抄送|副本|寄件日期|받는 사람|보낸 날짜|날짜|제목|참조"
)
FROM_FIELD = re.compile(rf"^[*\s]*(?:{_FROM_KEYS})[*\s]*[:：]", re.IGNORECASE)
HEADER_FIELD = re.compile(rf"^[*\s]*(?:{_FROM_KEYS}|{_OTHER_KEYS})[*\s]*[:：]", re.IGNORECASE)

# "-----Original Message-----" and its translations: the quoted mail follows, top-posted.
_ORIGINAL = (
    r"Original Message|Original E-?mail|Ursprüngliche Nachricht|Original-Nachricht|Originalnachricht"
    r"|Mensaje original|Message d'origine|Message original|Messaggio originale|Messaggio Originale"
    r"|Oorspronkelijk bericht|Origineel bericht|Oprindelig (?:besked|meddelelse|e-mail)"
    r"|Opprinnelig (?:melding|e-post)|Ursprungligt meddelande|Originalmeddelande|Alkuperäinen viesti"
    r"|Wiadomość oryginalna|Oryginalna wiadomość|Původní zpráva|Původní e-mail|Pôvodná správa"
    r"|Eredeti üzenet|Eredeti levél|Orijinal Mesaj|Özgün İleti|Исходное сообщение|Оригинальное сообщение"
    r"|Вихідне повідомлення|Mensagem original|Mensagem Original|Αρχικό μήνυμα|Mesaj original"
    r"|原始邮件|原始郵件|元のメッセージ|원본 메시지|Reply message|Reply Message|Original"
)
# A forward: when nothing is written above it, the forwarded mail is the message.
_FORWARDED = (
    r"Forwarded message|Forwarded Message|Begin forwarded message|Weitergeleitete Nachricht"
    r"|Weitergeleitete E-Mail|Anfang der weitergeleiteten Nachricht|Message transféré"
    r"|Début du message réexpédié"
    r"|Mensaje reenviado|Inicio del mensaje reenviado|Messaggio inoltrato|Inizio messaggio inoltrato"
    r"|Doorgestuurd bericht|Begin doorgestuurd bericht|Пересылаемое сообщение|Переслане повідомлення"
    r"|Przekazana wiadomość|Przesłana wiadomość|Początek przekazanej wiadomości"
    r"|Videresendt (?:meddelelse|besked|melding)|Vidarebefordrat meddelande|Vidarebefordrat mejl"
    r"|Välitetty viesti|Edelleenlähetetty viesti|Továbbított üzenet|Továbbított levél|Přeposlaná zpráva"
    r"|Preposlaná správa|İletilen mesaj|Mensagem encaminhada|Início da mensagem encaminhada"
    r"|Προωθημένο μήνυμα|Mesaj redirecționat"
    r"|转发的邮件|轉寄的郵件|転送されたメッセージ|転送メッセージ|전달된 메시지"
)
_RULE = r"[-=_*~\s]"
ORIGINAL_SEPARATOR = re.compile(
    rf"^{_RULE}{{2,}}(?:{_ORIGINAL}){_RULE}*:?$|^(?:{_ORIGINAL}){_RULE}{{2,}}$", re.I
)
FORWARD_SEPARATOR = re.compile(rf"^{_RULE}*(?:{_FORWARDED}){_RULE}*:?{_RULE}*$", re.IGNORECASE)
# A line that is only a rule: Outlook web's 32 underscores above its header block, a dangling "-----".
RULE_LINE = re.compile(r"^[-_=~*]{2,}\s*$")
# "---- On Wed, 30 Apr 2025 15:19:00 +0200 Ana <ana@example.com> wrote ----" (Zoho and others).
DASHED_ATTRIBUTION = re.compile(r"^-{2,}\s*(.+?)\s*-{2,}$")
QUOTED_LINE = re.compile(r"^[ \t]*>")
# Invisible characters clients add: Gmail's read tracker ᐧ, zero-width spaces, a byte-order mark.
INVISIBLE = re.compile("[\u1427\u200b\u200c\ufeff]")
