// Log Analytics workspace and a workspace-based Application Insights component that accepts only
// Entra-authenticated telemetry (DisableLocalAuth): the app's identity needs Monitoring Metrics
// Publisher on it and sends APPLICATIONINSIGHTS_AUTHENTICATION_STRING. The operators' workbook
// (workbook.bicep) queries the workspace.

@description('Required. Name of the Log Analytics workspace.')
param logAnalyticsName string

@description('Required. Name of the Application Insights component.')
param applicationInsightsName string

@description('Optional. Location of both resources.')
param location string = resourceGroup().location

@description('Optional. Tags applied to both resources.')
param tags object = {}

@description('Optional. Days the workspace keeps logs.')
@minValue(30)
@maxValue(730)
param retentionInDays int = 30

resource workspace 'Microsoft.OperationalInsights/workspaces@2023-09-01' = {
  name: logAnalyticsName
  location: location
  tags: tags
  properties: {
    retentionInDays: retentionInDays
    sku: {
      name: 'PerGB2018'
    }
    features: {
      enableLogAccessUsingOnlyResourcePermissions: true
    }
  }
}

resource appInsights 'Microsoft.Insights/components@2020-02-02' = {
  name: applicationInsightsName
  location: location
  tags: tags
  kind: 'web'
  properties: {
    Application_Type: 'web'
    WorkspaceResourceId: workspace.id
    IngestionMode: 'LogAnalytics'
    DisableLocalAuth: true
  }
}

module workbook 'workbook.bicep' = {
  name: 'workbook'
  params: {
    logAnalyticsWorkspaceId: workspace.id
    location: location
    tags: tags
  }
}

@description('The workspace\'s name.')
output logAnalyticsName string = workspace.name

@description('The workspace\'s resource id (diagnostic settings target).')
output logAnalyticsWorkspaceId string = workspace.id

@description('The Application Insights component\'s name.')
output applicationInsightsName string = appInsights.name

@description('The Application Insights component\'s resource id (alert scope, role assignment scope).')
output applicationInsightsId string = appInsights.id
