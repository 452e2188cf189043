/*
 * Private helper rules shared by the other rule files. Files are compiled
 * in name order into one namespace, so this file must sort first.
 */

private rule ScriptLike
{
    condition:
        uint16(0) == 0x2123 or
        extension == "sh" or extension == "bash" or extension == "zsh" or
        extension == "ksh" or extension == "py" or extension == "pl" or
        extension == "rb" or extension == "js" or extension == "ps1" or
        extension == "service" or extension == "timer" or
        filename == "Dockerfile" or filename == "crontab" or
        filepath matches /^\/(etc\/(cron|init|rc|systemd|profile)|var\/spool\/cron)/ or
        (executable and not (uint32(0) == 0x464c457f))
}
