"""Every user-visible string, in English and Japanese.

`t(key, **params)` formats the string for the current locale (TSUZUKI_LOCALE, `en` by
default). Keeping them here lets a test check that every key exists in both languages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Literal

Locale = Literal["en", "ja"]
LOCALES: tuple[Locale, ...] = ("en", "ja")

_locale: Locale = "en"
# The language of the person being answered, when their platform says (a Japanese
# Discord client): it beats TSUZUKI_LOCALE for everything said to them (`speaking`).
_asked: ContextVar[Locale | None] = ContextVar("tsuzuki_asked_locale", default=None)

CATALOG: dict[str, dict[Locale, str]] = {
    "internal_error": {
        "en": "Sorry, something went wrong on my side. The error was logged.",
        "ja": "申し訳ありません。内部でエラーが発生しました（ログに記録しました）。",
    },
    "outage_disk_full": {
        "en": "no space left on the disk of {path}",
        "ja": "{path} のディスクに空きがありません",
    },
    "outage_read_only": {
        "en": "the disk of {path} is read-only",
        "ja": "{path} のディスクが読み取り専用です",
    },
    "outage_io_error": {
        "en": "the disk of {path} failed to read or write (I/O error)",
        "ja": "{path} のディスクで入出力エラーが発生しました",
    },
    "outage_the_database": {"en": "the database", "ja": "データベース"},
    "outage_db_broken": {
        "en": "the database is damaged ({cause}); restore it from a backup",
        "ja": "データベースが壊れています（{cause}）。バックアップから復元してください",
    },
    "outage_while": {
        "en": "Failed: {cause}, while {doing}. Nothing else was changed.",
        "ja": "失敗しました: {doing}中に{cause}。ほかには何も変更していません。",
    },
    "doing_saving_version": {"en": "saving v{version}", "ja": "v{version} の保存"},
    "doing_writing_dataset": {
        "en": "writing the training data",
        "ja": "学習データの書き出し",
    },
    "doing_checkpoint": {"en": "saving a checkpoint", "ja": "チェックポイントの保存"},
    "doing_command": {"en": "running the command", "ja": "コマンドの実行"},
    "db_file_empty": {
        "en": "The database file {path} exists but is empty (0 bytes). Refusing to start "
        "over it: that would lose every message and consent it held. Restore it from a "
        "backup, or move it away to start afresh.",
        "ja": "データベースファイル {path} は存在しますが空（0バイト）です。すべてのメッセージと"
        "同意記録が失われるため、このまま起動しません。バックアップから復元するか、"
        "ファイルを移動してから新しく始めてください。",
    },
    "db_file_unreadable": {
        "en": "The database file {path} cannot be used: {cause}. Refusing to start over "
        "it. Restore it from a backup, or move it away to start afresh.",
        "ja": "データベースファイル {path} を使えません: {cause}。このまま起動しません。"
        "バックアップから復元するか、ファイルを移動してから新しく始めてください。",
    },
    "busy": {
        "en": "I'm busy right now, please try again in a moment.",
        "ja": "ただいま混み合っています。少し待ってからもう一度お試しください。",
    },
    "rate_limited": {
        "en": "Slow down a little: too many requests from {who} this minute. Try again shortly.",
        "ja": "少し間をあけてください。{who} からのリクエストが多すぎます。しばらくしてからお試しください。",
    },
    "channel_bad_ref": {
        "en": "'{ref}' is not a channel id. Use console:NAME, discord:GUILD/CHANNEL "
        "or slack:TEAM/CHANNEL.",
        "ja": "'{ref}' はチャンネルIDではありません。console:名前、discord:サーバー/チャンネル、"
        "slack:チーム/チャンネル の形で指定してください。",
    },
    "channel_unknown": {
        "en": "I don't know the channel {channel} yet.",
        "ja": "チャンネル {channel} はまだ登録されていません。",
    },
    "channel_never_seen": {
        "en": "I have never seen {channel}: no message, event or import named it, so "
        "nothing was changed. Known channels like it: {close}. To set up a channel before "
        "its first message, add --create.",
        "ja": "{channel} はまだ一度も見たことがありません（メッセージ、イベント、インポートの"
        "いずれもありません）。何も変更していません。似た既知のチャンネル: {close}。"
        "最初のメッセージより前に設定するには --create を付けてください。",
    },
    "channel_none_close": {"en": "none", "ja": "なし"},
    "setting_unknown": {
        "en": "Unknown setting '{key}'. Settings: {known}.",
        "ja": "'{key}' という設定はありません。設定項目: {known}。",
    },
    "setting_invalid": {
        "en": "{key} must be {kind} in the range {range} (got '{value}'). Nothing was changed.",
        "ja": "{key} は {range} の範囲の{kind}で指定してください（入力: '{value}'）。"
        "設定は変更されていません。",
    },
    "setting_set": {
        "en": "{key} is now {value} for this channel (was {old}).",
        "ja": "このチャンネルの {key} を {value} に変更しました（変更前: {old}）。",
    },
    "setting_reset": {
        "en": "{key} is back to the default, {value}.",
        "ja": "{key} を既定値 {value} に戻しました。",
    },
    "settings_header": {
        "en": "Sampling settings for {channel}:",
        "ja": "{channel} の生成設定:",
    },
    "settings_line": {
        "en": "{key} = {value} ({source}; {range}) — {help}",
        "ja": "{key} = {value}（{source}、範囲 {range}）— {help}",
    },
    "source_channel": {"en": "set for this channel", "ja": "チャンネル設定"},
    "source_default": {"en": "default", "ja": "既定値"},
    "admin_only": {
        "en": "Only channel admins can change settings.",
        "ja": "設定を変更できるのはチャンネルの管理者だけです。",
    },
    "settings_usage": {
        "en": "Usage: /settings show | /settings set KEY VALUE | /settings reset KEY",
        "ja": "使い方: /settings show | /settings set 項目 値 | /settings reset 項目",
    },
    "prompt_empty": {
        "en": "Give me the start of a text to continue, e.g. /continue Once upon a time,",
        "ja": "続きを書く文の書き出しを入力してください。例: /continue 織田信長は、",
    },
    "prompt_too_long": {
        "en": "That prompt is too long ({length} characters; at most {limit}).",
        "ja": "書き出しが長すぎます（{length} 文字、上限 {limit} 文字）。",
    },
    "prompt_banned_word": {
        "en": "That prompt contains a word this channel's admins never want posted"
        " (/settings show: banned_words).",
        "ja": "書き出しに、このチャンネルの管理者が投稿を禁止した語が含まれています"
        "（/settings show の banned_words）。",
    },
    "action_opted_out": {
        "en": "That message's author opted out: the bot does not use their messages.",
        "ja": "このメッセージの投稿者はオプトアウトしています。ボットはその人のメッセージを使いません。",
    },
    "unlearn_not_stored": {
        "en": "That message is not in this channel's history: nothing learns from it.",
        "ja": "このメッセージはチャンネルの履歴にありません。何も学習しません。",
    },
    "unlearn_not_yours": {
        "en": "Only its author or a channel admin can take a message out of the history.",
        "ja": "履歴から外せるのは、投稿者本人かチャンネルの管理者だけです。",
    },
    "unlearned": {
        "en": "Done: that message stays here, but the bot no longer learns from it"
        " (it leaves the history, the live counts and every next version).",
        "ja": "完了しました。メッセージはそのまま残りますが、ボットはもう学習しません"
        "（履歴・直近の学習・今後のバージョンから外れます）。",
    },
    "voice_generated_mark": {
        "en": "written by Tsuzuki in this member's voice, with their consent: not by them",
        "ja": "Tsuzuki が本人の同意を得てこのメンバーの口調で書いた文です（本人の発言ではありません）",
    },
    "voice_no_webhooks": {
        "en": "Posted as the bot: to post a member's voice under their name and avatar here,"
        " give the bot Manage Webhooks in this channel.",
        "ja": "ボットとして投稿しました。メンバーの名前とアイコンで投稿するには、"
        "このチャンネルでボットに「ウェブフックの管理」権限を与えてください。",
    },
    "voice_no_customize": {
        "en": "Posted as the bot: to post a member's voice under their name and picture,"
        " add the chat:write.customize scope to the app and reinstall it.",
        "ja": "ボットとして投稿しました。メンバーの名前と画像で投稿するには、"
        "アプリに chat:write.customize スコープを追加して再インストールしてください。",
    },
    "home_title": {"en": "Tsuzuki", "ja": "Tsuzuki（続き）"},
    "home_channels": {
        "en": "The channels I am in that you can see:",
        "ja": "私がいるチャンネルのうち、あなたが見られるもの:",
    },
    "home_no_channels": {
        "en": "None yet: invite me to a channel.",
        "ja": "まだありません。チャンネルに招待してください。",
    },
    "home_base_model": {"en": "the base model answers", "ja": "ベースモデルが応答"},
    "home_version": {"en": "version {version}", "ja": "バージョン {version}"},
    "home_version_bits": {
        "en": "version {version}: {bits} bits/char (its Markov chain: {markov})",
        "ja": "バージョン {version}: {bits} ビット/文字（マルコフ連鎖: {markov}）",
    },
    "home_training_on": {"en": "training on", "ja": "学習オン"},
    "home_training_off": {"en": "training off", "ja": "学習オフ"},
    "home_voice_off": {"en": "Take my voice back", "ja": "口調の貸し出しをやめる"},
    "home_opted_in": {
        "en": "Your messages are kept and may train the channels' models.",
        "ja": "あなたのメッセージは保存され、チャンネルのモデルの学習に使われることがあります。",
    },
    "home_opted_out": {
        "en": "You opted out: your messages are not kept (/tsuzuki optin to undo).",
        "ja": "オプトアウト中です。あなたのメッセージは保存されません（/tsuzuki optin で戻せます）。",
    },
    "home_voice_lent": {
        "en": "Your voice is lent in: {channels}",
        "ja": "口調を貸しているチャンネル: {channels}",
    },
    "home_no_voice": {
        "en": "You lent your voice nowhere.",
        "ja": "どこにも口調を貸していません。",
    },
    "home_opt_out": {"en": "Opt out", "ja": "オプトアウト"},
    "home_opt_in": {"en": "Store my messages again", "ja": "保存を再開する"},
    "home_opt_out_title": {"en": "Opt out?", "ja": "オプトアウトしますか？"},
    "home_opt_out_confirm": {
        "en": "Your messages in this workspace are forgotten, every model version that learnt"
        " from them is withdrawn, and nothing you write is kept from now on.",
        "ja": "このワークスペースでのあなたのメッセージを忘れ、それを学習したモデルの"
        "バージョンをすべて取り下げます。今後の発言も保存しません。",
    },
    "home_cancel": {"en": "Cancel", "ja": "キャンセル"},
    "override_bad": {
        "en": "Could not read '{item}': write overrides as key=value, e.g. temperature=0.7.",
        "ja": "'{item}' を読み取れません。temperature=0.7 のように 項目=値 で指定してください。",
    },
    "variant": {"en": "[{i}/{n}]", "ja": "[{i}/{n}]"},
    "models_none": {
        "en": "No trained versions yet for {channel}; using the base model {base}.",
        "ja": "{channel} にはまだ学習済みのバージョンがありません。ベースモデル {base} を使います。",
    },
    "models_header": {
        "en": "Model versions for {channel}:",
        "ja": "{channel} のモデルバージョン:",
    },
    "models_line": {
        "en": "v{version} {status} — {bits} bits/char (the channel's Markov chain: {markov}; live {live} vs {live_markov}), base {base}, {method}, eval loss {eval_loss}, created {created}",
        "ja": "v{version} {status} — {bits} ビット/文字（このチャンネルのマルコフ連鎖: {markov}、ライブ {live} 対 {live_markov}）、ベース {base}、{method}、評価損失 {eval_loss}、作成 {created}",
    },
    "quality_line": {
        "en": "v{version}: {bits} bits/char — the channel's Markov chain: {markov}{ratio}; live, learning every message at once: {live} against {live_markov}{live_ratio} (held-out messages; lower is better)",
        "ja": "v{version}: {bits} ビット/文字 — このチャンネルのマルコフ連鎖: {markov}{ratio}、すべてのメッセージをその場で学ぶライブ値: {live} 対 {live_markov}{live_ratio}（評価用の最新メッセージで測定、小さいほど良い）",
    },
    "version_promoted": {
        "en": "A better model now answers: {line}",
        "ja": "より良いモデルに切り替わりました: {line}",
    },
    "version_kept": {
        "en": "A new model was trained but not used: {line} — {reason}",
        "ja": "新しいモデルを学習しましたが、使いません: {line} — {reason}",
    },
    "demo_improving": {
        "en": "The model keeps training in the background (about 12 minutes); the channel says when a better one takes over.",
        "ja": "モデルはバックグラウンドで学習を続けます（約 12 分）。より良いモデルに切り替わったら、このチャンネルでお知らせします。",
    },
    "quality_ratio": {
        "en": " ({ratio:.2f}× the Markov chain)",
        "ja": "（マルコフ連鎖の {ratio:.2f} 倍）",
    },
    "no_active_version": {
        "en": "{channel} has no active model version yet: train it first (tsuzuki train {channel}).",
        "ja": "{channel} にはまだ有効なモデルバージョンがありません。先に学習してください（tsuzuki train {channel}）。",
    },
    "reply_empty": {
        "en": "(I had nothing to say this time.)",
        "ja": "（今回は言葉が出てきませんでした）",
    },
    "unknown_command": {
        "en": "Unknown command '{name}'. Try /help.",
        "ja": "'{name}' というコマンドはありません。/help をご覧ください。",
    },
    "help_header": {"en": "What you can do here:", "ja": "ここでできること:"},
    "help_continue": {
        "en": "continues your text in the channel's voice (as:@member: in theirs, if they lent it)",
        "ja": "あなたの文の続きをチャンネルらしく書きます（as:@メンバー: 本人が許可していればその人の口調で）",
    },
    "help_mention": {
        "en": "the channel's next message, in reply",
        "ja": "チャンネルの次のメッセージを返信として書きます",
    },
    "help_reply": {
        "en": "reply to one of my messages: the conversation goes on",
        "ja": "私のメッセージに返信すると、会話の続きを書きます",
    },
    "help_actions": {
        "en": "on a message: continue it, or keep it out of what I learn (yours, or an admin's)",
        "ja": "メッセージの操作: 続きを書く、または学習から外す（本人か管理者）",
    },
    "help_settings_show": {"en": "this channel's settings", "ja": "このチャンネルの設定"},
    "help_settings_set": {
        "en": "admins: change or reset a setting",
        "ja": "管理者: 設定の変更・リセット",
    },
    "help_models": {
        "en": "this channel's model versions",
        "ja": "このチャンネルのモデルのバージョン",
    },
    "help_models_admin": {
        "en": "admins: choose the version that answers",
        "ja": "管理者: 応答するバージョンの切り替え",
    },
    "help_training": {
        "en": "admins: whether the channel's history may train its model; train now",
        "ja": "管理者: 履歴での学習の許可・停止、今すぐ学習",
    },
    "help_voice": {
        "en": "lend this channel your voice (as:@you), take it back, or see where you stand",
        "ja": "このチャンネルにあなたの口調を貸す・取り消す・状態を見る",
    },
    "help_optout": {
        "en": "forget your messages and stop storing them · store them again",
        "ja": "あなたのメッセージを忘れて保存をやめる・再開する",
    },
    "help_help": {"en": "this list", "ja": "この一覧"},
    "help_history": {
        "en": "Anything else you type is kept as channel history.",
        "ja": "それ以外の入力はチャンネルの履歴として保存されます。",
    },
    "model_not_cached": {
        "en": "The model '{spec}' is not in the local Hugging Face cache ({cache}), and the hub is "
        "not reachable from here (or HF_HUB_OFFLINE is set). On a machine with network access, "
        "run `hf download {spec}` (`huggingface-cli download {spec}` with older huggingface_hub) "
        "and copy its cache here (or set HF_HOME to it), or save the model with save_pretrained "
        "and point TSUZUKI_BASE_MODEL at that directory. TSUZUKI_BASE_MODEL=scratch:tiny needs "
        "no network at all.",
        "ja": "モデル '{spec}' はローカルの Hugging Face キャッシュ（{cache}）になく、Hugging Face Hub "
        "にも接続できません（または HF_HUB_OFFLINE が設定されています）。ネットワークのある環境で "
        "`hf download {spec}`（古い huggingface_hub では `huggingface-cli download {spec}`）を実行して"
        "そのキャッシュをここにコピーする（または HF_HOME をそこに向ける）か、save_pretrained で保存した"
        "ディレクトリを TSUZUKI_BASE_MODEL に指定してください。ネットワーク不要の "
        "TSUZUKI_BASE_MODEL=scratch:tiny も使えます。",
    },
    "tokenizer_no_eos": {
        "en": "The tokenizer of '{spec}' has no end-of-text token, which Tsuzuki needs to tell "
        "messages apart. Use a causal language model whose tokenizer defines eos_token.",
        "ja": "'{spec}' のトークナイザーには文末（end-of-text）トークンがありません。メッセージの区切りに"
        "必要です。eos_token を定義したトークナイザーを持つ言語モデルを使ってください。",
    },
    "model_load_failed": {
        "en": "Could not load the model '{spec}': {reason}",
        "ja": "モデル '{spec}' を読み込めません: {reason}",
    },
    "model_dir_incomplete": {
        "en": "The directory '{path}' does not hold a causal language model with its tokenizer "
        "(config.json and tokenizer files are needed).",
        "ja": "ディレクトリ '{path}' には言語モデルとトークナイザー（config.json とトークナイザーの"
        "ファイル）がありません。",
    },
    "scratch_size_unknown": {
        "en": "Unknown scratch size '{size}'. Sizes: {sizes}.",
        "ja": "scratch のサイズ '{size}' はありません。サイズ: {sizes}。",
    },
    "tokenizer_missing": {
        "en": "The model '{spec}' has no tokenizer of its own; Tsuzuki will not fall back to "
        "another one. Save the tokenizer next to the model.",
        "ja": "モデル '{spec}' にトークナイザーがありません。別のトークナイザーで代用はしません。"
        "モデルと同じ場所にトークナイザーを保存してください。",
    },
    "import_done": {
        "en": "{path}: imported {imported}, duplicates {duplicates}, skipped {skipped}",
        "ja": "{path}: 取り込み {imported} 件、重複 {duplicates} 件、スキップ {skipped} 件",
    },
    "import_format_unknown": {
        "en": "Cannot tell the format of {path}; pass --format (jsonl, text, discord, slack).",
        "ja": "{path} の形式を判別できません。--format（jsonl, text, discord, slack）を指定してください。",
    },
    "import_needs_channel": {
        "en": "{path} does not name its channel; pass --channel (e.g. console:general).",
        "ja": "{path} にはチャンネルの情報がありません。--channel（例: console:general）を指定してください。",
    },
    "import_broken": {
        "en": "{path}: {position}: {problem}. Nothing was imported from this file.",
        "ja": "{path}: {position}: {problem}。このファイルからは何も取り込んでいません。",
    },
    "import_too_large": {
        "en": "{path} is too large to import: {size} MiB{unpacked}, above the limit of "
        "{limit} MiB (TSUZUKI_IMPORT_MAX_MB). Nothing was imported.",
        "ja": "{path} は大きすぎて取り込めません（{size} MiB{unpacked}、上限 {limit} MiB："
        "TSUZUKI_IMPORT_MAX_MB）。何も取り込んでいません。",
    },
    "import_missing": {
        "en": "{path} does not exist.",
        "ja": "{path} が見つかりません。",
    },
    "training_disabled": {
        "en": "Training is off for {channel}. An admin can turn it on with: tsuzuki channels {channel} training on",
        "ja": "{channel} の学習はオフです。管理者が tsuzuki channels {channel} training on で有効にできます。",
    },
    "training_not_enough": {
        "en": "{channel} has too little history to train on ({messages} usable messages; at least {needed} are needed).",
        "ja": "{channel} の履歴が少なすぎて学習できません（使えるメッセージ {messages} 件、最低 {needed} 件必要）。",
    },
    "training_busy": {
        "en": "A training run for {channel} is already in progress.",
        "ja": "{channel} の学習はすでに実行中です。",
    },
    "training_on": {
        "en": "Training is now on for {channel}: its history will be used to fine-tune its model.",
        "ja": "{channel} の学習を有効にしました。履歴を使ってモデルを調整します。",
    },
    "training_off": {
        "en": "Training is now off for {channel}: no new versions will be trained on its history.",
        "ja": "{channel} の学習を無効にしました。履歴から新しいバージョンは作られません。",
    },
    "train_done_promoted": {
        "en": "v{version} is now active for {channel}: eval loss {eval_loss:.3f} (perplexity {ppl:.1f}), before {before:.3f}.",
        "ja": "{channel} で v{version} を有効にしました。評価損失 {eval_loss:.3f}（パープレキシティ {ppl:.1f}）、学習前 {before:.3f}。",
    },
    "train_done_kept": {
        "en": "v{version} was trained for {channel} but not promoted: {reason}",
        "ja": "{channel} の v{version} を学習しましたが有効にはしていません: {reason}",
    },
    "not_promoted_reason": {
        "en": "its eval loss ({new:.4f} nats/char) is worse than active v{active}'s ({old:.4f}) on the same held-out messages",
        "ja": "同じ評価用メッセージで、評価損失（{new:.4f} nats/文字）が有効な v{active}（{old:.4f}）より悪いため",
    },
    "model_version_unknown": {
        "en": "{channel} has no model version {version}.",
        "ja": "{channel} にはバージョン {version} のモデルがありません。",
    },
    "model_activated": {
        "en": "v{version} now answers in {channel}.",
        "ja": "{channel} では今から v{version} が応答します。",
    },
    "model_forgotten": {
        "en": "v{version} of {channel} learnt from messages that have since been forgotten "
        "(a member opted out), so it can never answer again.",
        "ja": "{channel} の v{version} は、その後削除されたメッセージ（オプトアウトしたメンバーのもの）"
        "から学習したため、二度と使えません。",
    },
    "training_forgotten": {
        "en": "A member's messages in {channel} were forgotten while it trained, so the run "
        "was discarded. Train again.",
        "ja": "学習中に {channel} のメンバーのメッセージが削除されたため、この学習は破棄しました。"
        "もう一度学習してください。",
    },
    "model_no_rollback": {
        "en": "{channel} has no earlier active version to roll back to.",
        "ja": "{channel} には戻せる以前のバージョンがありません。",
    },
    "models_usage": {
        "en": "Usage: /models [list] | /models activate VERSION | /models rollback | /models reset [confirm]",
        "ja": "使い方: /models [list] | /models activate バージョン | /models rollback | /models reset [confirm]",
    },
    "models_reset_confirm": {
        "en": "This retires all {count} versions of {channel}: its base answers until the next training, which starts again from the base on the whole history. To go ahead: /models reset confirm",
        "ja": "{channel} の {count} 個のバージョンをすべて引退させます。次の学習まではベースモデルが答え、次の学習は全履歴でベースからやり直します。実行するには: /models reset confirm",
    },
    "models_reset_done": {
        "en": "Reset: {count} versions of {channel} retired. {base} answers until the next training starts again from it.",
        "ja": "リセットしました: {channel} の {count} 個のバージョンを引退させました。次の学習でやり直すまで {base} が答えます。",
    },
    "models_reset_nothing": {
        "en": "{channel} has no versions to reset: its base answers already.",
        "ja": "{channel} にはリセットするバージョンがありません。すでにベースモデルが答えています。",
    },
    "opted_out": {
        "en": "You are opted out: your messages here are forgotten ({count} deleted), models that learnt from them are withdrawn, and new ones will not be stored or used for training.",
        "ja": "オプトアウトしました。あなたのメッセージは削除され（{count} 件）、それを学習したモデルは取り下げました。今後は保存も学習への利用もされません。",
    },
    "opted_in": {
        "en": "You are opted in again: your new messages will be kept and may train this channel's model.",
        "ja": "オプトインしました。今後のメッセージは保存され、モデルの学習に使われることがあります。",
    },
    "training_queued": {
        "en": "Training for {channel} is queued (job {job}). `/models` shows the result when it is done.",
        "ja": "{channel} の学習を予約しました（ジョブ {job}）。終わったら /models で結果を確認できます。",
    },
    "too_slow": {
        "en": "That took too long to finish; please try again with fewer tokens.",
        "ja": "時間がかかりすぎたため中断しました。トークン数を減らしてもう一度お試しください。",
    },
    "jobs_none": {
        "en": "No jobs.",
        "ja": "ジョブはありません。",
    },
    "setting_channel_only": {
        "en": "{key} is a channel setting, not one for a single request: /settings set {key} VALUE (admins).",
        "ja": "{key} はチャンネルの設定で、1 回のリクエストには指定できません。/settings set {key} 値（管理者）で変更してください。",
    },
    "models_chart": {
        "en": "The loss curve of v{version} is attached.",
        "ja": "v{version} の損失曲線を添付しました。",
    },
    "notice_promoted": {
        "en": "📈 v{version} of this channel's model answers from now on: {bits} bits/char on the newest messages (the channel's Markov chain: {markov}; {previous}); learning every message at once, {live} against the chain's {live_markov}. Lower is better. Its loss curve:",
        "ja": "📈 このチャンネルのモデル v{version} に切り替わりました: 最新メッセージで {bits} ビット/文字（このチャンネルのマルコフ連鎖: {markov}、{previous}）。すべてのメッセージをその場で学ぶと {live}、マルコフ連鎖は {live_markov}。小さいほど良い値です。損失曲線:",
    },
    "notice_previous": {
        "en": "v{version} before it: {bits}",
        "ja": "これまでの v{version}: {bits}",
    },
    "notice_first": {
        "en": "its first version",
        "ja": "最初のバージョン",
    },
    "notice_kept": {
        "en": "Training {channel} ended, but the new version is not used: {line} — {reason}",
        "ja": "{channel} の学習は終わりましたが、新しいバージョンは使いません: {line} — {reason}",
    },
    "notice_failed": {
        "en": "Training {channel} failed: {error}",
        "ja": "{channel} の学習に失敗しました: {error}",
    },
    "console_image": {
        "en": "(image: {path})",
        "ja": "（画像: {path}）",
    },
    "voice_usage": {
        "en": "Usage: /voice on | /voice off | /voice (where you stand).",
        "ja": "使い方: /voice on | /voice off | /voice（現在の状態）",
    },
    "voice_not_lent": {
        "en": "That member has not lent this channel their voice. Only they can, with /voice on; until then nobody can write as them.",
        "ja": "そのメンバーはこのチャンネルで声（文体）の利用を許可していません。本人が /voice on で許可するまで、誰もその人として書くことはできません。",
    },
    "voice_on": {
        "en": "You lent {channel} your voice: from its next training on, /continue … as:@you writes like you, in this channel only. /voice off takes it back.",
        "ja": "{channel} にあなたの声（文体）の利用を許可しました。次の学習から、このチャンネルでだけ /continue … as:@あなた があなたらしく書きます。/voice off でいつでも取り消せます。",
    },
    "voice_off": {
        "en": "Your voice is taken back in {channel}: nobody can write as you, and its next version no longer learns how you write.",
        "ja": "{channel} での声（文体）の利用を取り消しました。誰もあなたとして書けなくなり、次のバージョンからはあなたの文体を学習しません。",
    },
    "voice_status_on": {
        "en": "You lent {channel} your voice (/voice off takes it back).",
        "ja": "{channel} に声（文体）の利用を許可しています（/voice off で取り消せます）。",
    },
    "voice_status_off": {
        "en": "Your voice is not lent to {channel}: nobody can write as you. /voice on lends it.",
        "ja": "{channel} では声（文体）の利用を許可していません。誰もあなたとして書けません。/voice on で許可できます。",
    },
    "voice_figure": {
        "en": "v{version} on your {messages} newest messages: {voice:.2f} bits/char as you, {channel:.2f} as the channel (lower is better).",
        "ja": "v{version} があなたの最新メッセージ {messages} 件で: あなたとして {voice:.2f} ビット/文字、チャンネルとして {channel:.2f}（小さいほど良い）。",
    },
    "voice_not_yet": {
        "en": "The active version has no figure for your voice yet (it comes with the next training, once you have a few recent messages).",
        "ja": "現在のバージョンにはまだあなたの声の評価がありません（次の学習で、最近のメッセージが数件あれば測定されます）。",
    },
    "console_welcome": {
        "en": "Tsuzuki — channel {channel}, model {model}. Type /help for commands, Ctrl-D to quit.",
        "ja": "Tsuzuki — チャンネル {channel}、モデル {model}。/help でコマンド一覧、Ctrl-D で終了します。",
    },
}


def set_locale(locale: Locale) -> None:
    global _locale
    _locale = locale


@contextlib.contextmanager
def speaking(locale: Locale | None) -> Iterator[None]:
    """Within it (and the tasks it starts), `t` speaks `locale`; None: TSUZUKI_LOCALE."""
    token = _asked.set(locale)
    try:
        yield
    finally:
        _asked.reset(token)


def current() -> Locale:
    return _asked.get() or _locale


def t(key: str, /, **params: object) -> str:
    """The message `key` in the current locale, formatted with `params`."""
    return CATALOG[key][current()].format(**params)


# The Discord commands' names, descriptions and option names in Japanese, by their
# English text (adapters/discord_commands.py; discord.py's Translator reads them).
COMMAND_TEXTS_JA: dict[str, str] = {
    "continue": "続き",
    "Continue your text in this channel's voice": "あなたの文の続きをこのチャンネルらしく書きます",
    "prompt": "書き出し",
    "The start of the text": "文の書き出し",
    "temperature": "温度",
    "0–5": "0〜5（大きいほど自由に）",
    "n": "件数",
    "How many variants (1–5)": "何通り書くか（1〜5）",
    "as": "話者",
    "Write like this member (only if they turned /voice on here)": (
        "このメンバーの口調で（本人がここで /voice on にしている場合のみ）"
    ),
    "settings": "設定",
    "This channel's sampling settings": "このチャンネルの設定",
    "show": "表示",
    "Show the settings": "設定を表示します",
    "set": "変更",
    "Change a setting": "設定を変更します",
    "key": "項目",
    "value": "値",
    "reset": "リセット",
    "Back to the default": "既定値に戻します",
    "training": "学習",
    "Whether this channel's history may train its model": "このチャンネルの履歴で学習してよいか",
    "on": "オン",
    "Allow training on this channel's history": "このチャンネルの履歴での学習を許可します",
    "off": "オフ",
    "Stop training on this channel's history": "このチャンネルの履歴での学習をやめます",
    "train": "今すぐ学習",
    "Queue a training run for this channel now": "このチャンネルの学習をいま予約します",
    "models": "モデル",
    "This channel's model versions": "このチャンネルのモデルのバージョン",
    "list": "一覧",
    "List the versions": "バージョンの一覧",
    "activate": "有効化",
    "Make a version answer": "このバージョンで応答させます",
    "version": "バージョン",
    "rollback": "ロールバック",
    "Back to the previous version": "ひとつ前のバージョンに戻します",
    "Retire every version; start again from the base": (
        "すべてのバージョンを引退させ、ベースからやり直します"
    ),
    "confirm": "確定",
    "True to do it (without: what it would do)": "True で実行（なしなら内容の確認だけ）",
    "voice": "声",
    "Whether /continue … as:@you may write like you here": (
        "/continue … as:@あなた でここであなたの口調で書いてよいか"
    ),
    "Let this channel's model write like me, here only": (
        "このチャンネルのモデルが私の口調で書くのを許可します（ここだけ）"
    ),
    "Nobody may write like me here any more": "ここではもう誰も私の口調で書けなくします",
    "status": "状態",
    "Where I stand, and how well it writes like me": "いまの状態と、どれだけ私らしく書けるか",
    "optout": "オプトアウト",
    "Forget my messages and stop storing them": "私のメッセージを忘れ、今後も保存しないようにします",
    "optin": "オプトイン",
    "Store my messages again": "私のメッセージの保存を再開します",
    "help": "ヘルプ",
    "What I can do here, and how": "ここでできることと使い方",
    "Continue this message": "このメッセージの続きを書く",
    "Don't learn from this": "これは学習しない",
}
