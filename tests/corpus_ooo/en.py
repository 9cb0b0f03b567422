"""English out-of-office texts: Exchange/Outlook ("Automatic reply:" and the body people type into it),
Lotus Notes/Domino's template (US and UK date order), Gmail, Apple/iCloud, Zoho, Zimbra and Sieve vacation
texts, corporate templates; traps that state no return. Read on 2026-12-08 (a Tuesday)."""

# ruff: noqa: E501  (corpus data: the texts are long string literals)
from __future__ import annotations

import datetime as dt

D = dt.date
CORPUS: dict[str, list[tuple[str, dt.date | None]]] = {
    "en": [
        (
            "Automatic reply: [SUP-26-12-7] Printer broken\n\nThank you for your email. I am out of the office "
            "until Friday, December 11th, 2026 with limited access to email. I will respond to your message "
            "upon my return.",
            D(2026, 12, 12),
        ),
        (
            "Automatic reply: Order 4411\n\nI am currently out of the office and will return on Monday, "
            "December 14. If you need immediate assistance, please contact support@example.com or call "
            "+1 (555) 012-3456.",
            D(2026, 12, 14),
        ),
        (  # Lotus Notes / HCL Domino, US date order
            "AUTO: Jane Smith is out of the office (returning 12/14/2026)\n\nI will be out of the office "
            "starting  12/07/2026 and will not return until 12/14/2026.\n\nI will respond to your message "
            "when I return.",
            D(2026, 12, 14),
        ),
        (  # the same, UK date order
            "AUTO: Jane Smith is out of the office (returning 14/12/2026)\n\nI will be out of the office "
            "starting  07/12/2026 and will not return until 14/12/2026.",
            D(2026, 12, 14),
        ),
        (
            "Thanks for your message. I'm on annual leave until 11/12/2026 and will reply when I'm back.",
            D(2026, 12, 12),
        ),
        ("I am out of the office until 12/11/2026. Happy holidays!", D(2026, 12, 12)),
        ("I'm away from 12/7 through 12/11, back 12/14.", D(2026, 12, 14)),
        (
            "I am on annual leave from Monday 7th December, returning on Monday 14th December 2026.",
            D(2026, 12, 14),
        ),
        ("I'm out of the office December 8-11 with no access to email.", D(2026, 12, 12)),
        ("Hi, I'm on vacation (Dec 7 - Dec 11) and will get back to you after Dec 11.", D(2026, 12, 12)),
        (
            "Thank you for contacting me. I will be out of the office from Thursday, December 3 to Friday, "
            "December 11, returning Monday, December 14.",
            D(2026, 12, 14),
        ),
        ("I am out of the office until 14:00 on Friday 11 December.", D(2026, 12, 11)),
        ("I'm out until 2pm on Friday, December 11.", D(2026, 12, 11)),
        ("I am currently on leave and will not be back until Monday 14th December.", D(2026, 12, 14)),
        ("I won't be back in the office until 4 January 2027. Merry Christmas!", D(2027, 1, 4)),
        (
            "Out of office from December 21st, 2026 through January 1st, 2027. I will be back on January 4th.",
            D(2027, 1, 4),
        ),
        ("I'm on parental leave through January 15, 2027.", D(2027, 1, 16)),
        ("Return date: 14/12/2026", D(2026, 12, 14)),
        (  # Gmail's vacation responder, typed by hand
            "Hi! I'm on holiday until the 14th of December without internet access. I'll answer your mail "
            "when I'm back.",
            D(2026, 12, 15),
        ),
        ("I'm away from my Mac until Mon, Dec 14.", D(2026, 12, 15)),  # iCloud
        (  # Zoho
            "Thank you for your email. I am currently out of office and will be back on 14-Dec-2026.",
            D(2026, 12, 14),
        ),
        (
            "Our office will be closed from 24 December to 1 January for the holidays. We will be back on "
            "4 January 2027.",
            D(2027, 1, 4),
        ),
        ("I am out of the office Monday, December 7 - Friday, December 11.", D(2026, 12, 12)),
        ("I am away on business until Thursday (10th December), back Friday.", D(2026, 12, 11)),
        (
            "I am currently out of the office with limited access to email. I will respond as soon as "
            "possible after my return on 14 December.",
            D(2026, 12, 14),
        ),
        (  # HTML turned into text: wrapped lines, non-breaking spaces
            "I am out of the office\nuntil\u00a0Monday,\u00a0December\u00a014 and will reply\nwhen I return.",
            D(2026, 12, 15),
        ),
        (
            "Out of Office until 12/14 \u2013 please contact my colleague John Doe (john@example.com) for "
            "anything urgent.",
            D(2026, 12, 15),
        ),
        ("Written 1 December 2026: I am away until 11 December 2026.", D(2026, 12, 12)),
        ("I am out of office on Thursday 10 December and Friday 11 December.", None),  # when, not until
        ("I am away between 7 and 11 December.", D(2026, 12, 12)),
        ("Please note that our office is closed on 25 December and 1 January.", None),
        (  # a later absence is not the one the responder answers for
            "I'm back on 14 December. Please note I will also be away from 21/12/2026 to 04/01/2027.",
            D(2026, 12, 14),
        ),
        ("I am out until 11 December. I'm also on leave December 24-31.", D(2026, 12, 12)),
        # traps: no return stated
        ("I am out of the office until further notice. Please contact helpdesk@example.com.", None),
        ("I'm out of the office and will be back next week.", None),
        ("I'm out today and back on Monday.", None),  # weekday only: see return_date's docstring
        ("I have been on leave since 1 December and have limited access to email.", None),
        ("Please note I no longer work here. This mailbox is not monitored.", None),
        (
            "I am out of the office. For urgent matters please call our hotline +44 20 7946 0958 or write "
            "to urgent@example.co.uk.\n\nKind regards\nJane Smith\nExample Ltd, 14 Baker Street, London",
            None,
        ),
        (
            "I am travelling and will reply on my return.\n\nOn Tue, Dec 8, 2026 at 10:14 AM Support "
            "<support@example.com> wrote:",
            None,
        ),
        ("For urgent issues call 0800 12 12 2026 or our office at 10/12 High Street.", None),
        # written before the reader was run on them
        ("I'm currently out of the office, returning Tuesday 15 December.", D(2026, 12, 15)),
        ("I am out of the office from 7-11 December inclusive.", D(2026, 12, 12)),
        (
            "Thank you for your email. I am currently on annual leave and will be returning to the office on Monday 14th December. I will respond to your email on my return.",
            D(2026, 12, 14),
        ),
        ("I'm OOO until Dec. 14th.", D(2026, 12, 15)),
        ("I'm out of the office until Monday 12/14.", D(2026, 12, 15)),
        ("I'm out of office through 12/11 and will respond when I return on 12/14.", D(2026, 12, 14)),
        (
            "I am out of the office with no access to email until Monday 14 December, when I will respond.",
            D(2026, 12, 15),
        ),
        ("I'll be back in the office on the 14th of December.", D(2026, 12, 14)),
        ("Back in office: 14.12.2026", D(2026, 12, 14)),
        ("Out of office: 7 December - 11 December 2026", D(2026, 12, 12)),
        ("I am on leave 7\u201311 December 2026.", D(2026, 12, 12)),
        (
            "I am on holiday until Wednesday 6th January 2027 and will have no access to emails.",
            D(2027, 1, 7),
        ),
        ("I'm on maternity leave until September 2027.", None),
        ("I'm away over Christmas and will return in the new year.", None),
        ("I am out sick today. I expect to be back on Thursday.", None),
        (
            "Out of office\n\nI'm on leave from Mon 7 Dec and back on Mon 14 Dec. For urgent requests, email support@example.com.\n\nJane\n--\nExample Ltd | 10/12 Church Road | Tel 020 7946 0000",
            D(2026, 12, 14),
        ),
        ("Automatic reply: Re: your invoice from 01/12/2026\nI'm away until 11.12.", D(2026, 12, 12)),
        ("I am currently on leave, returning 14.12. Your email will not be forwarded.", D(2026, 12, 14)),
        ("I will be out of the office Dec 7th-11th.", D(2026, 12, 12)),
        ("I'll be out Monday 12/7 to Friday 12/11.", D(2026, 12, 12)),
        # a second batch written before the reader was run on them
        ("I am out of the office until Mon 14/12.", D(2026, 12, 15)),
        ("I'm out of the office and will return on 12.14.2026", D(2026, 12, 14)),
        ("I'll be back Dec 14", D(2026, 12, 14)),
        ("Returning 14 Dec.", D(2026, 12, 14)),
        (
            "I am currently out of the office on annual leave, returning Wednesday 16th December 2026. During this period I will have no access to emails.",
            D(2026, 12, 16),
        ),
        ("I'm out of the office until the 14th.", None),
        ("Away till Mon 14th Dec", D(2026, 12, 15)),
        (
            "I'm currently travelling with limited access to email until Thursday 10th December. I will respond upon my return on Monday 14th December.",
            D(2026, 12, 14),
        ),
        ("I'm out of the office on 10 and 11 December.", None),
        ("Your message of 08/12/2026 has been received. I am away until 11/12/2026.", D(2026, 12, 12)),
        ("I'm away. I'll respond to emails received before 1 December first.", None),
        ("Please resend your message after 14 December.", D(2026, 12, 15)),
        ("I am on leave from 1 December until 11 December 2026.", D(2026, 12, 12)),
        ("I will be on vacation Dec 7th through Dec 11th, returning Dec 14th.", D(2026, 12, 14)),
        ("OOO 12/7-12/11", D(2026, 12, 12)),
        (
            "I'm out of the office until Friday 11 December 2026 inclusive. If your query is urgent, please call 01632 960 123.",
            D(2026, 12, 12),
        ),
        ("Hi, I am on a training course 7-11 December and will be back on the 14th.", D(2026, 12, 12)),
        # a third batch written before the reader was run on them
        (
            "Thank you for your message. I am out of the office from Wednesday 9 December, returning Monday 14 December. For urgent enquiries please contact our service desk on 0161 496 0000 (available until 18:00).",
            D(2026, 12, 14),
        ),
        (
            "I'm on leave until 14/12. If it's urgent, please email my manager, who is in the office until 11/12.",
            D(2026, 12, 15),
        ),
        (
            "I am out of the office until Tuesday, 12/15. I will have intermittent access to email.",
            D(2026, 12, 16),
        ),
        ("Hello, I'm on PTO through Friday 12/11 and back Monday 12/14. Thanks!", D(2026, 12, 14)),
        ("I'm currently out of the office, back on Dec 14, 2026.", D(2026, 12, 14)),
        ("I'm out of office today (December 8th) only.", None),
        ("Please note I am working reduced hours until the end of December.", None),
        ("I am on sick leave. Expected return: 14th December 2026.", D(2026, 12, 14)),
        ("I'm out of the office until 11th December 2026 (inclusive).", D(2026, 12, 12)),
        # someone else's dates: an urgent contact, a colleague
        (
            "Automatic reply: [SUP-26-12-7] URGENT: invoice wrong\n\nI am away until 11 December.",
            D(2026, 12, 12),
        ),
        (
            "I'm away until 11 December, for urgent matters please contact support@example.com.",
            D(2026, 12, 12),
        ),
        # a greeting to colleagues is not an urgent contact
        (
            "Automatic reply: [SUP-26-12-7] Printer\n\nDear colleague,\nI am out until 11 December.",
            D(2026, 12, 12),
        ),
        ("If it's urgent,\nplease email my manager,\nwho is in the office until 11/12.", None),
        # a fourth batch written before the reader was run on them
        (
            "Out of Office: On vacation Dec 7-11\n\nI'm on vacation and will respond when I get back on Monday, Dec 14.",
            D(2026, 12, 14),
        ),
        ("I am out of the office until Monday 14 December at 9am.", D(2026, 12, 15)),
        (
            "Hello, I am attending a conference in Berlin (7.12.-11.12.) and will answer after my return.",
            D(2026, 12, 12),
        ),
        ("I am away until Friday the 11th of December 2026.", D(2026, 12, 12)),
        (
            "This mailbox is no longer monitored since 30 November 2026. Please write to support@example.com.",
            None,
        ),
        (
            "I'm on leave until 11 December. Kind regards, Anna\nSent from my iPhone\n\nOn 8 Dec 2026, at 09:14, Example Support wrote:",
            D(2026, 12, 12),
        ),
        ("My working days are Monday to Wednesday. I will reply on my next working day.", None),
        (
            "I will be out of office from 12/09/2026 to 12/11/2026 with no access to email. I will return on 12/14/2026.",
            D(2026, 12, 14),
        ),
        # a fifth batch, traps around a plain statement, written before the reader was run on them
        (
            "I am out of the office until 11 December. Our office hours are Mon-Fri 9:00-17:30.",
            D(2026, 12, 12),
        ),
        (
            "I'm away until 11 December.\n\nJohn Smith | Support Engineer\nExample GmbH, Hauptstr. 12, 10115 Berlin\nRegistered 01.12.2010, HRB 12345",
            D(2026, 12, 12),
        ),
        (
            "Please note: from 1 January 2027 our new address is 5 Main Street. I am out of the office until 11 December.",
            D(2026, 12, 12),
        ),
        (
            "I am out of the office until 11 December. This email and any attachments are confidential. Version 2.12 of our terms applies.",
            D(2026, 12, 12),
        ),
        ("Thanks for your email! I'm off until Monday and will reply then.", None),
        ("I'm out of the office this week (back 14/12).", D(2026, 12, 14)),
        ("Away: 07.12.2026 \u2013 11.12.2026", D(2026, 12, 12)),
        ("Out of office 7th-11th December, back Monday 14th.", D(2026, 12, 12)),
        ("I'm out until 12/11. If urgent, call me on 07700 900123.", D(2026, 12, 12)),
    ],
}
