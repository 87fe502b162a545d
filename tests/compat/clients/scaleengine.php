<?php
// A ScaleEngine API client in PHP posting the form as a string, urlencoded with "%20" for
// spaces (rawurlencode) or "+" (http_build_query), json_encode's "\/" and "\uXXXX" escapes.
//
//   php scaleengine.php URL API_KEY SECRET CDN COMMAND SPACES(%20|+) [FIELD=VALUE ...]
list(, $url, $api_key, $secret, $cdn, $command, $spaces) = $argv;
$request = array('command' => $command, 'api_key' => $api_key, 'timestamp' => time(),
                 'cdn' => (int)$cdn);
foreach (array_slice($argv, 7) as $field) {
    list($name, $value) = explode('=', $field, 2);
    $request[$name] = $name == 'id' ? (int)$value : $value;
}
$request['signature'] = base64_encode(hash_hmac('sha256', json_encode($request), $secret, true));
$text = json_encode($request);
$body = $spaces == '+' ? http_build_query(array('json' => $text))
                       : 'json=' . rawurlencode($text);
$ch = curl_init($url);
curl_setopt($ch, CURLOPT_POST, true);
curl_setopt($ch, CURLOPT_RETURNTRANSFER, true);
curl_setopt($ch, CURLOPT_POSTFIELDS, $body);
$raw = curl_exec($ch);
$status = curl_getinfo($ch, CURLINFO_HTTP_CODE);
$answer = json_decode($raw, true);
if ($answer['status'] == 'failure') {
    echo "FAILURE {$answer['code']}: {$answer['message']} (HTTP $status)\n";
} else {
    echo "SUCCESS " . json_encode($answer['data']) . "\n";
}
