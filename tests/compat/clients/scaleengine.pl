#!/usr/bin/perl
# A ScaleEngine API client as Perl users write it: LWP, JSON, Digest::SHA. Hash order is
# Perl's (random), cdn is a string, the signature is base64 padded by hand and spliced into
# the encoded text by a regex, and the request is posted urlencoded. Like ScaleEngine's own
# client, it reads the body only when LWP says the request succeeded.
#
#   perl scaleengine.pl URL API_KEY SECRET CDN COMMAND [FIELD=VALUE ...]
use strict;
use warnings;
use LWP::UserAgent;
use JSON;
use Digest::SHA qw(hmac_sha256_base64);
use Encode qw(decode_utf8);

binmode(STDOUT, ':encoding(UTF-8)');
my ($url, $api_key, $secret, $cdn, $command, @fields) = map { decode_utf8($_) } @ARGV;
my %request = (
    command   => $command,
    api_key   => $api_key,
    timestamp => time(),
    cdn       => "$cdn",
);
for my $field (@fields) {
    my ($name, $value) = split /=/, $field, 2;
    $request{$name} = $value =~ /^\d+$/ && $name eq 'id' ? $value + 0 : $value;
}
my $text = JSON->new->utf8->encode(\%request);
my $signature = hmac_sha256_base64($text, $secret);
$signature .= '=' while length($signature) % 4;
$text =~ s/\}$/,"signature":"$signature"}/;

my $response = LWP::UserAgent->new(timeout => 30)->post($url, { json => $text });
if (!$response->is_success) {
    print "HTTP-ERROR ", $response->code, "\n";
    exit 0;
}
my $answer = decode_json($response->decoded_content);
if ($answer->{status} eq 'failure') {
    print "FAILURE $answer->{code}: $answer->{message}\n";
} else {
    print "SUCCESS ", JSON->new->canonical->encode($answer->{data}), "\n";
}
